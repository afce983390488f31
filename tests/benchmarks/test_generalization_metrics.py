"""The generalization benchmark's own figures: false signal outside the object, the summary."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization import (  # noqa: E402
    Record,
    _load_records,
    evaluate,
    false_signal,
    group_of,
    held_out_priors,
    outside_object,
    parse_args,
    summary_table,
)
from benchmarks.generalization_cases import Case, CaseMeta  # noqa: E402
from diffusion_core.denoiser import GaussianDenoiser  # noqa: E402
from diffusion_core.reconstruct import ReconConfig  # noqa: E402
from diffusion_core.uncertainty import EMPIRICAL, CalibrationEntry, Setting  # noqa: E402


def disc(n: int = 64, radius: float = 16.0) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(n) - n / 2, torch.arange(n) - n / 2, indexing="ij")
    return ((y**2 + x**2) <= radius**2).to(torch.complex64)


def test_outside_object_excludes_the_dilated_object() -> None:
    ref = disc()
    outside = outside_object(ref, dilate=3)
    inside = ref.abs().numpy() > 0.5
    assert not (outside & inside).any()
    # a 3-pixel 8-connected dilation: pixel (32, 32 + 16 + 3) is covered, (32, 32 + 16 + 4) is not
    assert not outside[32, 51] and outside[32, 52]


def test_false_signal_measures_a_blob_outside_the_object() -> None:
    ref = disc()
    outside = outside_object(ref, dilate=3)
    assert false_signal(ref, ref, outside) == 0.0
    img = ref.clone()
    img[2:12, 2:12] = 0.5  # a 100-pixel blob, half the object's brightness, in the background
    # 100 of the outside pixels are 0.5, so the 99th percentile of them is 0.5 (fit ~ 1)
    value = false_signal(ref, img, outside)
    assert outside.sum() * 0.01 < 100
    r, m = ref.abs().double(), img.abs().double()
    a = float((m * r).sum() / (m * m).sum())
    assert value == pytest.approx(0.5 * a, rel=1e-6)
    assert math.isnan(false_signal(ref, img, np.zeros((64, 64), bool)))


def _record(case: str, mask: str, seed: int, margin: float) -> Record:
    nan = math.nan
    values = dict.fromkeys(
        (
            "psnr_pm psnr_l1 psnr_object_pm psnr_object_l1 ssim_pm ssim_l1 margin_object "
            "within_2std false_signal_pm false_signal_l1 false_signal_ref l1_weight "
            "seconds_pm seconds_l1"
        ).split(),
        nan,
    )
    return Record(case, "s", "held out", mask, seed, margin=margin, checkpoint="p", **values)


def test_summary_takes_min_and_median_over_cases_of_the_median_over_seeds() -> None:
    mask = "R=4 1D random"
    records = [
        _record("a", mask, 0, 1.0),
        _record("a", mask, 1, 3.0),
        _record("a", mask, 2, 2.5),  # case a: median 2.5
        _record("b", mask, 0, -1.0),  # case b: -1
        _record("c", mask, 0, 4.0),  # case c: 4
    ]
    line = next(line for line in summary_table(records) if mask in line)
    cells = [c.strip() for c in line.split("|")]
    assert cells[3] == "3"  # cases
    assert cells[4] == "-1.00 / 2.50"  # margin: min over cases / median over cases
    assert cells[5] == "-"  # all NaN
    other = replace(records[0], mask="R=8 2D Poisson", margin=7.0)
    assert any("R=8 2D Poisson | 1 | 7.00 / 7.00" in line for line in summary_table([other]))


def test_groups_follow_the_model_card() -> None:
    splits = {"colin27": "train", "niivue_FLAIR": "validation"}
    assert group_of("colin27", splits) == "seen by prior"
    assert group_of("niivue_FLAIR", splits) == "held out"
    assert group_of("someone_new", splits) == "held out"
    assert group_of("colin27", None).startswith("unknown")
    assert group_of("brain8ch_full_c_y_x", splits).startswith("held out (eval brain")


def test_record_images_round_trip(tmp_path: Path) -> None:
    from benchmarks.generalization import load_images, save_images

    key = ("niivue_FLAIR axial 83, loops x9, noise 0.01, fov x1.20", "R=8 2D Poisson", 2)
    images = {"reference": disc(), "std": torch.rand(64, 64)}
    save_images(tmp_path, key, images)
    back = load_images(tmp_path, key)
    assert back is not None and torch.equal(back["reference"], images["reference"])
    assert torch.equal(back["std"], images["std"])
    assert load_images(tmp_path, (key[0], key[1], 3)) is None


def _card(folder: Path, stem: str, held_out: list[str], seen: list[str]) -> Path:
    """A checkpoint stem with a card (the weights file's content is not read)."""
    data = [{"subject": s, "split": "validation", "file": s} for s in held_out]
    data += [{"subject": s, "split": "train", "file": s} for s in seen]
    (folder / f"{stem}.json").write_text(json.dumps({"training_data": data}))
    (folder / f"{stem}.safetensors").write_bytes(b"")
    return folder / f"{stem}.safetensors"


def test_checkpoint_dir_gives_each_subject_the_prior_that_held_it_out(tmp_path: Path) -> None:
    flair = _card(tmp_path, "loso_flair", ["niivue_FLAIR"], ["colin27", "niivue_chris_t1"])
    colin = _card(tmp_path, "loso_colin", ["colin27"], ["niivue_FLAIR", "niivue_chris_t1"])
    (tmp_path / "loso_colin.state.safetensors").write_bytes(b"")  # training state: not a prior
    (tmp_path / "loso_colin.state.json").write_text("{}")
    (tmp_path / "no_card.safetensors").write_bytes(b"")
    assert held_out_priors(tmp_path) == {"niivue_FLAIR": str(flair), "colin27": str(colin)}
    other = _card(tmp_path / "..", "explicit", ["niivue_FLAIR"], [])
    args = parse_args(
        ["--checkpoint-dir", str(tmp_path), "--checkpoint-for", f"niivue_FLAIR={other}"]
    )
    assert args.checkpoint_for == {"niivue_FLAIR": str(other), "colin27": str(colin)}


def test_checkpoint_dir_refuses_two_priors_holding_out_one_subject(tmp_path: Path) -> None:
    _card(tmp_path, "a", ["colin27"], [])
    _card(tmp_path, "b", ["colin27", "niivue_FLAIR"], [])
    with pytest.raises(ValueError, match=r"colin27 is held out by both a\.safetensors and b"):
        held_out_priors(tmp_path)
    with pytest.raises(ValueError, match=r"no STEM\.safetensors"):
        held_out_priors(tmp_path / "missing")


def _disc_case(n: int = 48, coils: int = 4, noise: float = 0.01) -> Case:
    from diffusion_core.fft import fft2c

    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    ref = ((yy**2 + xx**2) <= 0.5).to(torch.complex64) * (1 + 0.3 * yy)
    phases = [torch.exp(1j * torch.pi * (c / coils + 0.3 * (xx + yy))) for c in range(coils)]
    weights = [
        torch.exp(-((yy - math.cos(c)) ** 2 + (xx - math.sin(c)) ** 2)) for c in range(coils)
    ]
    maps = torch.stack([w * p for w, p in zip(weights, phases, strict=True)]).to(torch.complex64)
    maps = maps / maps.abs().square().sum(0).sqrt()
    g = torch.Generator().manual_seed(3)
    kspace = fft2c(maps * ref)
    kspace = kspace + noise * torch.complex(
        torch.randn(kspace.shape, generator=g), torch.randn(kspace.shape, generator=g)
    )
    meta = CaseMeta("disc", "disc", "volume", "axial", 0, "test", coils, noise, (n, n), 1.0, 1.0,
                    (0.0, 0.0), 0)  # fmt: skip
    return Case(kspace, ref, maps, noise, meta)


def test_calibrated_coverage_uses_the_card_std_and_the_raw_column_stays_raw() -> None:
    """The benchmark reports both: the raw sample std's coverage (independent of any card) and
    the coverage of the std as the product sends it (the card's factor applied)."""
    case = _disc_case()
    prior = GaussianDenoiser.diagonal(
        torch.zeros(48, 48, dtype=torch.complex64), torch.ones(48, 48)
    )
    base = ReconConfig(nfe=6, num_samples=3, cg_iters=3)

    def coverage(factor: float | None) -> tuple[float, float]:
        entries = ()
        if factor is not None:
            setting = Setting("dds", 6, 3, 3, 4, "1d")
            entries = (CalibrationEntry(setting, factor, EMPIRICAL, 1, "t", 0.5, 0.95),)
        values, _ = evaluate(
            case, "R=4 1D random", 0, prior, replace(base, calibration=entries), (0.01,),
            torch.device("cpu"), 2,
        )  # fmt: skip
        return values["within_2std"], values["within_2std_calibrated"]

    raw, none = coverage(None)
    assert math.isnan(none)
    raw_low, low = coverage(0.2)
    raw_high, high = coverage(5.0)
    assert raw_low == raw_high == raw  # same seed, same samples: the raw column ignores the card
    assert 0.0 < raw < 1.0
    assert low < raw < high  # the card's factor widens or narrows what the product sends


def test_records_written_before_the_calibrated_column_load_as_nan(tmp_path: Path) -> None:
    old = asdict(_record("c", "R=4 1D random", 0, 1.0))
    del old["within_2std_calibrated"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps([old]))
    (record,) = _load_records(path)
    assert math.isnan(record.within_2std_calibrated)
    assert record.margin == 1.0
