"""Calibration mode ``interleaved``: the coil maps of each repetition come from the last few
repetitions together (ismrmrd-tools' own interleaved files, with and without ACS lines)."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import replace
from pathlib import Path

import ismrmrd
import numpy as np
import pytest
import torch
from fake_recon import ZeroFilledRss
from gadget_helpers import acquisitions_of, assembled_slices, shepp_logan, with_calibration_mode

from diffusion_core.coils import rss
from diffusion_core.fft import ifft2c
from diffusion_core.metrics import psnr
from gadget.assembly import (
    AssembledSlice,
    SliceKey,
    interleaved_calibration,
)
from gadget.config import GadgetConfig
from gadget.geometry import EncodingGeometry
from gadget.replay import replay


def _header(path: Path) -> ismrmrd.xsd.ismrmrdHeader:
    xml, _ = acquisitions_of(path)
    return ismrmrd.xsd.CreateFromDocument(xml)


def _full_kspace(path: Path) -> torch.Tensor:
    (full,) = assembled_slices(path)
    return full.kspace


@pytest.fixture(scope="module")
def no_acs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """R = 2 without ACS lines, noise-free: the tool writes repetition 0 with the even lines,
    repetition 1 with the odd ones, and calibration mode interleaved."""
    folder = tmp_path_factory.mktemp("interleaved")
    return shepp_logan(folder / "r2.h5", acceleration=2, noise=0.0, calibration_width=0)


def test_the_header_sets_the_interleave(no_acs_file, tmp_path, caplog) -> None:
    header = _header(no_acs_file)
    assert header.encoding[0].parallelImaging.calibrationMode.value == "interleaved"
    assert EncodingGeometry.from_header(header).interleave == 2
    assert EncodingGeometry.from_header(header).interleaving_dimension == ""  # not in the file
    parallel = header.encoding[0].parallelImaging
    parallel.interleavingDimension = ismrmrd.xsd.interleavingDimensionType.PHASE
    assert EncodingGeometry.from_header(header).interleaving_dimension == "phase"
    embedded = with_calibration_mode(no_acs_file, "embedded", tmp_path / "embedded.h5")
    assert EncodingGeometry.from_header(_header(embedded)).interleave == 1
    header.encoding[0].parallelImaging.accelerationFactor.kspace_encoding_step_1 = 0
    with caplog.at_level(logging.WARNING, logger="gadget.geometry"):
        assert EncodingGeometry.from_header(header).interleave == 1
    assert (
        "accelerationFactor.kspace_encoding_step_1 = 0: expected an integer from 1" in caplog.text
    )


@pytest.mark.parametrize("acceleration", [2, 3])
def test_each_repetition_gets_the_kspace_of_all_of_them(acceleration, full_file, tmp_path) -> None:
    source = shepp_logan(
        tmp_path / "in.h5", acceleration=acceleration, noise=0.0, calibration_width=0
    )
    recorder = ZeroFilledRss()
    result = replay(
        source, tmp_path / "out.h5", GadgetConfig(device="cpu"), progress=False,
        reconstructor=recorder,
    )  # fmt: skip
    assert result.run.ok and result.run.slices_done == acceleration
    full = _full_kspace(full_file)  # the same phantom, every line, no noise
    for repetition, seen in enumerate(recorder.seen):
        assert seen.key.repetition == repetition
        rows = seen.mask.any(-1).nonzero().flatten().tolist()
        assert rows == list(range(repetition, full.shape[1], acceleration))  # its own, unchanged
        assert seen.calibration is not None
        np.testing.assert_allclose(
            seen.calibration.numpy(), full.numpy(), atol=1e-4 * float(full.abs().max())
        )
        names = ", ".join(f"repetition {r} phase 0" for r in range(acceleration))
        assert (
            seen.calibration_note == f"coil maps from {acceleration} interleaved slices ({names})"
        )
    with ismrmrd.Dataset(str(tmp_path / "out.h5"), "dataset", create_if_needed=False) as out:
        meta = ismrmrd.Meta.deserialize(out.read_image("image_1", 0).attribute_string)
    assert meta["CoilMapCalibration"] == recorder.seen[0].calibration_note


def test_without_interleaving_a_slice_without_acs_fails_and_its_lines_go_downstream(
    no_acs_file, tmp_path
) -> None:
    embedded = with_calibration_mode(no_acs_file, "embedded", tmp_path / "embedded.h5")
    result = replay(embedded, tmp_path / "out.h5", GadgetConfig(device="cpu"), progress=False)
    assert result.run.slices_done == 0 and len(result.run.failed) == 2
    assert "expected at least 5 fully sampled rows and columns" in result.run.failed[0]
    assert "expected an ACS block" in result.run.failed[1]
    with ismrmrd.Dataset(str(tmp_path / "out.h5"), "dataset", create_if_needed=False) as out:
        assert out.number_of_acquisitions() == 2 * 16  # both repetitions' raw lines, kept


def _slice(repetition: int, rows: list[int], value: complex, location: int = 0) -> AssembledSlice:
    kspace = torch.zeros((2, 8, 8), dtype=torch.complex64)
    mask = torch.zeros((8, 8))
    kspace[:, rows] = value
    mask[rows] = 1
    key = SliceKey(location, 0, 0, repetition, 0, 0)
    return AssembledSlice(key, kspace, mask, None, None, ismrmrd.AcquisitionHeader())


def test_a_slice_waits_for_its_window_and_the_stream_end_uses_what_came() -> None:
    read: list[int] = []

    def stream():
        for r, rows, value, location in [
            (0, [0, 2, 4, 6], 1.0, 0),
            (0, [0, 2, 4, 6], 5.0, 1),  # another slice location: a window of its own
            (1, [1, 3, 5, 7], 3.0, 0),
            (2, [0, 2, 4, 6], 2.0, 0),  # lines of repetition 0 again: averaged over the window
        ]:
            read.append(r)
            yield _slice(r, rows, value, location)

    out = interleaved_calibration(stream(), 2)
    first = next(out)
    assert read == [0, 0, 1]  # the first slice came only when its partner was read
    assert (first.key.slice, first.key.repetition) == (0, 0)
    assert torch.equal(first.calibration[0, :, 0].real, torch.tensor([1.0, 3.0] * 4))
    assert torch.equal(first.kspace[0, :, 0].real, torch.tensor([1.0, 0.0] * 4))  # own data kept
    second = next(out)
    assert second.key.repetition == 1 and torch.equal(second.calibration, first.calibration)
    third = next(out)
    assert third.key.repetition == 2  # window: repetitions 1 and 2
    assert torch.equal(third.calibration[0, :, 0].real, torch.tensor([2.0, 3.0] * 4))
    (last,) = list(out)  # the end of the stream: location 1 with one slice of its window
    assert last.key.slice == 1 and torch.equal(last.calibration, last.kspace)
    assert last.calibration_note == "coil maps from 1 interleaved slices (repetition 0 phase 0)"


def test_the_header_interleaving_dimension_names_the_counter_that_moves() -> None:
    def phase_slice(phase: int, repetition: int, rows: list[int]) -> AssembledSlice:
        assembled = _slice(0, rows, float(phase + 1))
        return replace(assembled, key=assembled.key._replace(phase=phase, repetition=repetition))

    # two repetitions of a cine of two phases, interleaved over the phases
    slices = [phase_slice(p, r, [p, p + 2, p + 4, p + 6]) for r in range(2) for p in range(2)]
    out = list(interleaved_calibration(iter(slices), 2, "phase"))
    assert [(s.key.repetition, s.key.phase) for s in out] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for s in out:  # each repetition's phases together: every line, values 1 and 2
        assert torch.equal(s.calibration[0, :, 0].real, torch.tensor([1.0, 2.0] * 4))
    assert out[2].calibration_note == "coil maps from 2 interleaved slices (phase 0, phase 1)"


def test_no_interleave_passes_slices_through_unchanged() -> None:
    slices = [_slice(0, [0, 1], 1.0), _slice(1, [2, 3], 1.0)]
    assert list(interleaved_calibration(iter(slices), 1)) == slices


@pytest.mark.timeout(240)
def test_interleaved_file_without_acs_reconstructs_with_the_shipped_prior(
    full_file, tmp_path
) -> None:
    noisy = shepp_logan(tmp_path / "noisy.h5", acceleration=2, noise=0.02, calibration_width=0)
    config = GadgetConfig(nfe=10, num_samples=2, device="cpu", send_uncertainty=False)
    result = replay(noisy, tmp_path / "out.h5", config, progress=False)
    assert result.run.ok and result.run.slices_done == 2
    reference = rss(ifft2c(_full_kspace(full_file)))
    with ismrmrd.Dataset(str(tmp_path / "out.h5"), "dataset", create_if_needed=False) as out:
        images = [out.read_image("image_1", i) for i in range(2)]
    for assembled, image in zip(assembled_slices(noisy), images, strict=True):
        zero_filled = rss(ifft2c(assembled.kspace))
        mean = torch.from_numpy(image.data[0, 0])
        gain = psnr(reference, mean) - psnr(reference, zero_filled)
        assert gain > 3.0, f"repetition {assembled.key.repetition}: PSNR gain {gain:.2f} dB"


def test_the_window_keeps_the_central_block_the_coil_maps_are_made_from(tmp_path) -> None:
    from diffusion_core.espirit import CALIB_SIZE, espirit_maps
    from gadget.assembly import WINDOW_BLOCK

    assert WINDOW_BLOCK >= CALIB_SIZE  # ESPIRiT's calibration block lies inside what is kept
    matrix = ["-m", "64", "-c", "4", "-n", "0"]
    full_file = tmp_path / "full.h5"
    subprocess.run(
        ["ismrmrd_generate_cartesian_shepp_logan", *matrix, "-a", "1", "-o", str(full_file)],
        check=True, capture_output=True,
    )  # fmt: skip
    source = tmp_path / "r2.h5"
    subprocess.run(
        ["ismrmrd_generate_cartesian_shepp_logan", *matrix, "-a", "2", "-o", str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    recorder = ZeroFilledRss()
    replay(source, tmp_path / "out.h5", GadgetConfig(device="cpu"), progress=False,
           reconstructor=recorder)  # fmt: skip
    full = _full_kspace(full_file)
    inside = torch.zeros(full.shape[-2:], dtype=torch.bool)
    inside[8:56, 8:56] = True  # the central 48 x 48 of the 64 x 64 grid
    for seen in recorder.seen:
        np.testing.assert_allclose(
            seen.calibration[:, inside].numpy(), full[:, inside].numpy(),
            atol=1e-4 * float(full.abs().max()),
        )  # fmt: skip
        assert not bool(seen.calibration[:, ~inside].abs().any())
        maps = espirit_maps(seen.calibration, (seen.calibration.abs().sum(0) > 0).float())
        expected = espirit_maps(full)  # every line measured: the same central block
        np.testing.assert_allclose(maps.numpy(), expected.numpy(), atol=1e-4)
