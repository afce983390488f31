"""``gadgetron-diffusion calibrate`` end to end on small NIfTI volumes with a small prior."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "diffusion_core"))
from training_data_files import ellipsoid_volume, write_nifti

from diffusion_core.checkpoint import load_checkpoint, read_card
from diffusion_core.uncertainty import BIRGE, BIRGE_TOLERANCE, CRC, EMPIRICAL, entries_from_card
from gadget.cli import main

FAST = [
    "--nfe",
    "2",
    "--samples",
    "2",
    "--cg-iters",
    "2",
    "--crop",
    "32",
    "--no-progress",
    "--coils",
    "4",
]


def calibrate(data: Path, checkpoint: str, out: Path, *options: str) -> int:
    """``gadgetron-diffusion calibrate`` at the FAST settings, R=4 1D random lines."""
    common = ["--checkpoint", checkpoint, "--out", str(out), "--masks", "random:4"]
    return main(["calibrate", "--data", str(data), *common, *FAST, *options])


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cal")
    rng = np.random.default_rng(0)
    for name, radii in (("alice", (12, 14, 10)), ("bob", (14, 11, 12))):
        vol = ellipsoid_volume((36, 36, 30), radii).astype(np.float32)
        vol *= 1 + 0.3 * rng.random(vol.shape).astype(np.float32)
        write_nifti(folder / f"{name}.nii.gz", vol, (1.0, 1.0, 1.0))
    return folder


@pytest.mark.slow
def test_calibrate_writes_a_copy_with_the_fit(
    volumes: Path,
    small_checkpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = Path(small_checkpoint).with_suffix(".json").read_bytes()
    out = tmp_path / "calibrated"
    # one CG setting for every case (the FOV rule is tested below)
    rule_off = ("--cg-iters-inside", "0", "--cg-iters-cut", "0")
    with caplog.at_level(logging.WARNING):
        rc = calibrate(volumes, small_checkpoint, out, "--slices-per-subject", "1", *rule_off)
    printed = capsys.readouterr().out
    assert rc == 0, printed
    # the raw std is fitted: no "uncalibrated" warning for each case
    assert "uncalibrated" not in caplog.text
    assert logging.getLogger("diffusion_core.uncertainty").level == logging.NOTSET  # restored
    assert Path(small_checkpoint).with_suffix(".json").read_bytes() == before
    (entry,) = entries_from_card(read_card(out))
    assert entry.setting.sampler == "dds" and entry.setting.nfe == 2
    assert entry.setting.num_samples == 2 and entry.setting.acceleration == 4
    assert entry.setting.cg_iters == 2
    # the shipped card's model: the misfit (Birge) inflation with its tolerance
    assert (entry.residual_exponent, entry.residual_tolerance) == (BIRGE, BIRGE_TOLERANCE)
    assert entry.setting.matrix == 32  # the --crop grid of its cases, for the nearest-grid lookup
    assert entry.cases == 2 and entry.method == EMPIRICAL  # 1 slice x 2 subjects: no guarantee
    assert "alice" in entry.data and "bob" in entry.data
    # the fitted factor makes the mean per-case coverage of the calibration cases 0.95
    assert 0.95 <= entry.coverage_after < 0.96
    assert "held out by subject" in printed and printed.count("| random:4 cg 2 |") == 2
    load_checkpoint(out)  # the copy's weights match its card
    assert (
        json.loads(out.with_suffix(".json").read_text())["sha256"]
        == read_card(small_checkpoint)["sha256"]
    )


@pytest.mark.slow
def test_calibrate_fits_each_cg_setting_the_fov_rule_gives(
    tmp_path: Path, small_checkpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the replay: line-mask cases whose object lies inside the field of view get
    --cg-iters-inside, those the FOV cuts on both sides --cg-iters-cut, and each setting's entry
    is fitted on the cases that got it."""
    folder = tmp_path / "data"
    folder.mkdir()
    # a head well inside the 32 x 32 crop, and one wider than the crop in every direction
    # (a soft edge: a hard-edged one's high k-space reads as noise above the rule's limit)
    grids = np.meshgrid(*[(np.arange(36) - 17.5) / r for r in (9, 10, 8)], indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids))
    small = (200 / (1 + np.exp(6 * (radius - 1)))).astype(np.float32)
    write_nifti(folder / "small.nii.gz", small, (1, 1, 1))
    write_nifti(folder / "wide.nii.gz", ellipsoid_volume((48, 48, 48), (26, 26, 26)), (1, 1, 1))
    out = tmp_path / "calibrated"
    rule = ("--cg-iters-inside", "7", "--cg-iters-cut", "1")
    rc = calibrate(
        folder, small_checkpoint, out, "--slices-per-subject", "2", "--noise", "0.005", *rule
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    entries = {e.setting.cg_iters: e for e in entries_from_card(read_card(out))}
    assert sorted(entries) == [1, 7], printed
    assert entries[7].cases == 2 and "small" in entries[7].data and "wide" not in entries[7].data
    assert entries[1].cases == 2 and "wide" in entries[1].data and "small" not in entries[1].data
    assert printed.count("| random:4 cg 7 |") == 2 and printed.count("| random:4 cg 1 |") == 2


def test_calibrate_errors_name_the_data(
    tmp_path: Path, small_checkpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    common = ["--checkpoint", small_checkpoint, "--out", str(tmp_path / "x"), *FAST]
    assert main(["calibrate", "--data", str(empty), *common]) == 2
    assert "no NIfTI/MGZ/HDF5 files found" in capsys.readouterr().err
    (empty / "broken.nii.gz").write_bytes(b"not a volume")
    assert main(["calibrate", "--data", str(empty), *common]) == 2
    err = capsys.readouterr().err
    assert "no usable cases in 1 file(s)" in err and str(empty) in err
    assert main(["calibrate", "--data", str(tmp_path / "missing"), *common]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["calibrate", "--data", str(empty), *common, "--samples", "1"]) == 2
    assert "K >= 2" in capsys.readouterr().err
    assert main(["calibrate", "--data", str(empty), *common, "--masks", "spiral:4"]) == 2
    assert "KIND:R" in capsys.readouterr().err
    assert main(["calibrate", "--data", str(empty), *common, "--cg-iters-cut", "-1"]) == 2
    assert "--cg-iters-cut: expected >= 0, got -1" in capsys.readouterr().err
    assert torch.get_default_dtype() == torch.float32


@pytest.mark.slow
def test_calibrate_fits_masks_of_one_setting_into_one_entry(
    volumes: Path, small_checkpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every 2nd and every 3rd line with their ACS lines (R 1.6 and 2.0 at 32 lines) are both
    acceleration class 2, 1D: a card tells them apart no further, so they make one entry fitted
    on the cases of both; two entries of one setting would leave one of them unused."""
    out = tmp_path / "calibrated"
    rule_off = ("--cg-iters-inside", "0", "--cg-iters-cut", "0")
    rc = main(
        [
            "calibrate",
            "--data",
            str(volumes),
            "--checkpoint",
            small_checkpoint,
            "--out",
            str(out),
            "--masks",
            "equispaced:2",
            "equispaced:3",
            "random:4",
            *FAST,
            "--slices-per-subject",
            "1",
            *rule_off,
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    entries = {e.setting.acceleration: e for e in entries_from_card(read_card(out))}
    assert sorted(entries) == [2, 4], printed
    assert entries[2].cases == 4 and "equispaced:2 + equispaced:3 cg 2" in entries[2].data
    assert entries[4].cases == 2 and "equispaced" not in entries[4].data
    # each case's row names its own mask
    assert (
        printed.count("| equispaced:2 cg 2 |") == 2 and printed.count("| equispaced:3 cg 2 |") == 2
    )


@pytest.mark.slow
def test_calibrate_fit_mean_drops_the_risk_control_bound_and_says_so(
    tmp_path: Path, small_checkpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """24 cases: risk control asks a mean case coverage of 1 - (25 x 0.05 - 1) / 24 = 0.990 of
    them; --fit mean fits 0.95 and the card says it has no finite-sample guarantee."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, radii in (("carol", (13, 14, 26)), ("dave", (14, 12, 25))):
        vol = ellipsoid_volume((36, 36, 60), radii).astype(np.float32)
        vol *= 1 + 0.3 * rng.random(vol.shape).astype(np.float32)
        write_nifti(folder / f"{name}.nii.gz", vol, (1.0, 1.0, 1.0))
    rule_off = ("--cg-iters-inside", "0", "--cg-iters-cut", "0")
    fitted = {}
    for fit in ("risk-control", "mean"):
        out = tmp_path / fit
        rc = calibrate(
            folder, small_checkpoint, out, "--slices-per-subject", "12", "--fit", fit, *rule_off
        )
        printed = capsys.readouterr().out
        assert rc == 0, printed
        (fitted[fit],) = entries_from_card(read_card(out))
    guaranteed, mean = fitted["risk-control"], fitted["mean"]
    assert guaranteed.cases == mean.cases == 24
    assert guaranteed.method == CRC and guaranteed.coverage_after >= 1 - 0.25 / 24 - 1e-9
    assert mean.method == EMPIRICAL and 0.95 <= mean.coverage_after < 0.955
    assert mean.factor < guaranteed.factor


@pytest.mark.slow
def test_calibrate_fits_the_one_sample_linear_width(
    volumes: Path, small_checkpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--samples 1 --linear-width writes a K = 1 entry that a K = 1 replay with the width uses,
    and that K >= 2 never does; --linear-width with more samples is an error that says so."""
    out = tmp_path / "single"
    rule_off = ("--cg-iters-inside", "0", "--cg-iters-cut", "0")
    one = ("--samples", "1", "--linear-width", "--slices-per-subject", "2")
    rc = calibrate(volumes, small_checkpoint, out, *rule_off, *one)
    printed = capsys.readouterr().out
    assert rc == 0, printed
    (entry,) = entries_from_card(read_card(out))
    assert entry.setting.num_samples == 1 and "linear-Gaussian width" in entry.setting.label()
    assert entry.cases == 4 and 0.95 <= entry.coverage_after < 0.97
    from diffusion_core.uncertainty import Setting, lookup

    k1 = Setting("dds", 2, 1, 2, 4, "1d", 32)
    assert lookup((entry,), k1) is entry
    assert lookup((entry,), Setting("dds", 2, 2, 2, 4, "1d", 32)) is None
    assert calibrate(volumes, small_checkpoint, tmp_path / "x", "--linear-width") == 2
    assert "--linear-width: the width of one sample" in capsys.readouterr().err
