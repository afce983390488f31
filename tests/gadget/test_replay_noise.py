"""``replay --noise NOISE.h5``: noise scans of a separate measurement reach the gadget."""

from __future__ import annotations

from pathlib import Path

import ismrmrd
import numpy as np
import pytest
import torch
from fake_recon import ZeroFilledRss
from gadget_helpers import acquisitions_of

from diffusion_core.noise import noise_covariance
from gadget.cli import main
from gadget.config import GadgetConfig
from gadget.replay import ReplayError, replay

CONFIG = GadgetConfig(device="cpu")


def _write(path: Path, xml: bytes, acquisitions: list[ismrmrd.Acquisition]) -> Path:
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dataset:
        dataset.write_xml_header(xml)
        for acquisition in acquisitions:
            dataset.append_acquisition(acquisition)
    return path


def _is_noise(acquisition: ismrmrd.Acquisition) -> bool:
    return acquisition.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)


@pytest.fixture
def split(accelerated_file: Path, tmp_path: Path) -> tuple[Path, Path, list[ismrmrd.Acquisition]]:
    """The ismrmrd-tools file as two files written by ismrmrd-python: its noise scans alone (a
    dependency measurement) and its imaging lines without noise."""
    xml, acquisitions = acquisitions_of(accelerated_file)
    noise = [a for a in acquisitions if _is_noise(a)]
    assert noise
    return (
        _write(tmp_path / "noise.h5", xml, noise),
        _write(tmp_path / "imaging.h5", xml, [a for a in acquisitions if not _is_noise(a)]),
        noise,
    )


@pytest.mark.timeout(60)
def test_noise_file_gives_the_noise_covariance(split, tmp_path) -> None:
    noise_file, imaging, noise = split
    without = ZeroFilledRss()
    replay(imaging, tmp_path / "a.h5", CONFIG, progress=False, reconstructor=without)
    assert [s.noise_covariance for s in without.seen] == [None, None]
    with_noise = ZeroFilledRss()
    result = replay(
        imaging,
        tmp_path / "b.h5",
        CONFIG,
        progress=False,
        reconstructor=with_noise,
        noise=noise_file,
    )
    assert result.run.slices_done == 2
    samples = torch.from_numpy(np.concatenate([a.data for a in noise], axis=1))
    expected = noise_covariance(samples).to(torch.complex64)  # same dwell time as the imaging lines
    for assembled in with_noise.seen:
        assert assembled.noise_covariance is not None
        torch.testing.assert_close(assembled.noise_covariance, expected, rtol=1e-5, atol=1e-9)


@pytest.mark.timeout(60)
def test_in_stream_noise_wins_and_the_note_says_so(split, accelerated_file, tmp_path) -> None:
    noise_file, _, _ = split
    result = replay(
        accelerated_file, tmp_path / "c.h5", CONFIG, progress=False,
        reconstructor=ZeroFilledRss(), noise=noise_file,
    )  # fmt: skip
    assert any("not used, the input has" in line for line in result.left_out)


@pytest.mark.timeout(60)
def test_unusable_noise_files_are_clear_errors(split, accelerated_file, tmp_path) -> None:
    _, imaging, noise = split
    xml, _ = acquisitions_of(accelerated_file)
    no_noise = _write(tmp_path / "none.h5", xml, [ismrmrd.Acquisition.from_array(noise[0].data)])
    with pytest.raises(
        ReplayError, match=r"none\.h5:/dataset/data: no acquisition is flagged ACQ_IS_NOISE"
    ):
        replay(imaging, tmp_path / "d.h5", CONFIG, reconstructor=ZeroFilledRss(), noise=no_noise)
    two = ismrmrd.Acquisition.from_array(noise[0].data[:2])
    two.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    odd = _write(tmp_path / "two.h5", xml, [two])
    with pytest.raises(
        ReplayError,
        match=r"two\.h5: noise scans of 2 channels, but the input's acquisitions have \[4\]",
    ):
        replay(imaging, tmp_path / "e.h5", CONFIG, reconstructor=ZeroFilledRss(), noise=odd)
    nan = ismrmrd.Acquisition.from_array(noise[0].data.copy())
    nan.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    nan.data[0, 0] = np.nan
    bad = _write(tmp_path / "nan.h5", xml, [nan])
    with pytest.raises(
        ReplayError, match=r"nan\.h5:/dataset/data: noise scan at acquisition 0 has NaN"
    ):
        replay(imaging, tmp_path / "f.h5", CONFIG, reconstructor=ZeroFilledRss(), noise=bad)
    with pytest.raises(ReplayError, match=r"missing\.h5: no such file \(noise file\)"):
        replay(
            imaging,
            tmp_path / "g.h5",
            CONFIG,
            reconstructor=ZeroFilledRss(),
            noise=tmp_path / "missing.h5",
        )
    assert not any(tmp_path.glob("[defg].h5"))


def test_cli_noise_option_reaches_the_replay(split, tmp_path, capsys) -> None:
    _, imaging, _ = split
    missing = tmp_path / "missing.h5"
    args = [
        "replay",
        str(imaging),
        str(tmp_path / "out.h5"),
        "--noise",
        str(missing),
        "--device",
        "cpu",
    ]
    assert main(args) == 2
    assert f"{missing}: no such file (noise file)" in capsys.readouterr().err
