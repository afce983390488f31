"""benchmarks/replay_check.py writes raw files the gadget reads back as the case it simulated."""

from __future__ import annotations

import sys
from pathlib import Path

import ismrmrd
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization_cases import CoilSpec, Placement, SliceSpec, make_case  # noqa: E402
from benchmarks.replay_check import coloured, line_mask, write_raw  # noqa: E402
from diffusion_core.fft import fft2c  # noqa: E402
from diffusion_core.masks import phase_encode_axis  # noqa: E402
from gadget.assembly import AssembledSlice, assemble, group_slices  # noqa: E402
from gadget.datasets import open_read_only  # noqa: E402
from gadget.geometry import EncodingGeometry  # noqa: E402
from gadget.stream import cartesian_acquisitions, noise_adjustment  # noqa: E402
from tests.benchmarks.test_generalization_cases import ellipsoid_subject  # noqa: E402


def _read(path: Path) -> tuple[list[ismrmrd.Acquisition], AssembledSlice]:
    """The file's acquisitions, and its one slice as the gadget assembles it."""
    with open_read_only(path, "dataset") as dataset:
        xml = dataset.read_xml_header()
        acquisitions = [
            dataset.read_acquisition(i) for i in range(dataset.number_of_acquisitions())
        ]
    geometry = EncodingGeometry.from_header(ismrmrd.xsd.CreateFromDocument(xml))
    (group,) = group_slices(noise_adjustment(cartesian_acquisitions(acquisitions, list().append)))
    return acquisitions, assemble(group, geometry)


def test_raw_file_assembles_to_the_simulated_lines(tmp_path: Path) -> None:
    case = make_case(
        ellipsoid_subject(),
        SliceSpec(2, 0.5),
        CoilSpec("loops", 8),
        0.02,
        Placement((64, 64), 1.3),
        seed=3,
    )
    lines = line_mask("R=4 1D random", 64, seed=1)
    write_raw(tmp_path / "raw.h5", case, lines, 4)
    acquisitions, slice_ = _read(tmp_path / "raw.h5")
    assert acquisitions[0].is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    assert len(acquisitions) == 1 + int(lines.sum())
    expected = case.kspace * torch.from_numpy(lines)[None, :, None]
    torch.testing.assert_close(slice_.kspace, expected)
    assert torch.equal(slice_.mask.bool(), torch.from_numpy(lines)[:, None].expand(64, 64))
    assert phase_encode_axis(slice_.mask) == 0  # ky lines: the cg_iters rule's line masks
    assert slice_.prewhitened
    # the noise scan's covariance is the simulated white noise, within a 256-sample estimate
    diag = slice_.noise_covariance.diagonal().real.numpy()
    np.testing.assert_allclose(diag, 2 * 0.02**2, rtol=0.3)
    # the embedded calibration lines are the central run of sampled lines, flagged as such
    flagged = {
        a.idx.kspace_encode_step_1
        for a in acquisitions
        if a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    }
    assert 32 in flagged and all(lines[ky] for ky in flagged)
    assert sorted(flagged) == list(range(min(flagged), max(flagged) + 1))


def test_coloured_noise_reaches_the_noise_scan_and_the_data(tmp_path: Path) -> None:
    case = make_case(
        ellipsoid_subject(),
        SliceSpec(1, 0.5),
        CoilSpec("birdcage", 8),
        0.02,
        Placement((48, 48), 1.3),
        seed=4,
    )
    mixed, a = coloured(case, 0.3)
    assert not np.allclose(a, np.eye(8))
    # the data's noise (k-space minus the noise-free signal) has covariance 2 sigma^2 A A^H
    noise = (mixed.kspace - fft2c(case.maps_true * case.reference)).reshape(8, -1).numpy()
    expected = 2 * 0.02**2 * a @ a.conj().T
    measured = noise @ noise.conj().T / noise.shape[1]
    np.testing.assert_allclose(measured, expected, atol=0.1 * np.abs(expected).max())
    lines = line_mask("R=4 1D random", 48, seed=0)
    write_raw(tmp_path / "raw.h5", mixed, lines, 4, a, noise_samples=4096)
    acquisitions, slice_ = _read(tmp_path / "raw.h5")
    assert acquisitions[0].number_of_samples == 4096
    scan = slice_.noise_covariance.numpy()
    np.testing.assert_allclose(scan, expected, atol=0.1 * np.abs(expected).max())
