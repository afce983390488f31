"""Calibrated std: the finite-K model on Gaussian Monte Carlo, conformal coverage on a synthetic
problem whose coverage is known exactly, nearest-setting lookup, the model card block, reconstruct."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from scipy.stats import norm

from diffusion_core.checkpoint import load_checkpoint, read_calibration, write_calibration
from diffusion_core.denoiser import GaussianDenoiser
from diffusion_core.priors import DEFAULT_PRIOR_PATH
from diffusion_core.reconstruct import ReconConfig, reconstruct
from diffusion_core.uncertainty import (
    CRC,
    EMPIRICAL,
    CalibrationEntry,
    Setting,
    acceleration_class,
    calibrate_std,
    calibration_block,
    entries_from_card,
    finite_k_factor,
    fit_factor,
    leave_one_out,
    pixel_ratios,
)

TRIALS = 40_000


def _binomial_tol(p: float, n: int) -> float:
    return 4.0 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("k", [2, 4, 8, 16])
def test_finite_k_factor_covers_a_fresh_gaussian_draw(k: int) -> None:
    rng = np.random.default_rng(k)
    draws = rng.normal(size=(TRIALS, k + 1)) * rng.uniform(0.1, 3.0, size=(TRIALS, 1))
    samples, fresh = draws[:, :k], draws[:, k]
    err = np.abs(fresh - samples.mean(1))
    s = samples.std(1, ddof=1)
    covered = float(np.mean(err <= finite_k_factor(k) * s))
    assert abs(covered - 0.95) < _binomial_tol(0.95, TRIALS), covered


def test_raw_two_std_under_covers_as_the_issue_measured() -> None:
    """mean +- 2 s of K = 4 exact draws covers about 0.83, K = 8 about 0.90 (issue 14)."""
    rng = np.random.default_rng(0)
    for k, expected in ((4, 0.83), (8, 0.90)):
        d = rng.normal(size=(TRIALS, k + 1))
        cov = float(np.mean(np.abs(d[:, k] - d[:, :k].mean(1)) <= 2 * d[:, :k].std(1, ddof=1)))
        assert abs(cov - expected) < 0.01, (k, cov)


# Synthetic problem: case i has a scale kappa_i ~ lognormal(0, 0.3) by which its error exceeds
# its std (prior mismatch varies per image); pixel ratios |e| / std = kappa_i |N(0, 1)|. At a
# factor lam (half-width lam f(K) std), a fresh case's coverage is E_kappa[2 Phi(lam f / kappa) - 1]:
# computed exactly by quadrature over kappa.
K, PIXELS, SPREAD = 4, 300, 0.3


def _cases(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    kappas = np.exp(SPREAD * rng.normal(size=n)) * 2.0
    return [kap * np.abs(rng.normal(size=PIXELS)) for kap in kappas]


def _exact_coverage(lam: float) -> float:
    u, w = np.polynomial.hermite_e.hermegauss(80)
    kappa = np.exp(SPREAD * u) * 2.0
    per_kappa = 2 * norm.cdf(lam * finite_k_factor(K) / kappa) - 1
    return float((w * per_kappa).sum() / w.sum())


def test_conformal_risk_control_gives_the_nominal_coverage_on_fresh_cases() -> None:
    """n = 40 cases: the bound holds; over 60 calibration draws the exact coverage of a fresh
    case averages >= 0.95 and not much more (the bound's slack is about 1 / (n + 1))."""
    rng = np.random.default_rng(1)
    n = 40
    fits = [fit_factor(_cases(rng, n), [K] * n) for _ in range(60)]
    assert {f.method for f in fits} == {CRC}
    exact = np.array([_exact_coverage(f.factor) for f in fits])
    assert exact.mean() >= 0.95 - 3 * exact.std() / math.sqrt(exact.size)
    assert exact.mean() <= 0.95 + 1.0 / (n + 1) + 0.005
    # the fit is what makes it: two thirds of the factor cover far less
    assert _exact_coverage(2 / 3 * float(np.median([f.factor for f in fits]))) < 0.90


def test_few_cases_fit_the_mean_coverage_and_say_so() -> None:
    rng = np.random.default_rng(2)
    fits = [fit_factor(_cases(rng, 8), [K] * 8) for _ in range(100)]
    assert {f.method for f in fits} == {EMPIRICAL}
    assert all(abs(f.mean_coverage - 0.95) < 0.01 for f in fits)
    exact = np.array([_exact_coverage(f.factor) for f in fits])
    assert abs(exact.mean() - 0.95) < 0.01, exact.mean()


def test_leave_one_out_never_fits_on_the_held_out_group() -> None:
    wide, narrow = np.full(100, 10.0), np.linspace(0.01, 1.0, 100)
    fits = leave_one_out([narrow, narrow, wide], [K] * 3, ["a", "a", "b"])
    # holding out b leaves only the narrow cases: a factor fitted on them alone
    assert fits[2].factor * finite_k_factor(K) == pytest.approx(0.95, abs=0.011)
    assert fits[0].factor == fits[1].factor == pytest.approx(10.0 / finite_k_factor(K))
    with pytest.raises(ValueError, match="only one"):
        leave_one_out([narrow], [K], ["a"])


def test_pixel_ratios_use_the_fitted_magnitudes_on_the_object() -> None:
    ref = torch.zeros(4, 4, dtype=torch.complex64)
    ref[1:3, 1:3] = 1.0
    mean = ref.clone() * 2
    mean[1, 1] = 2.4
    mean[0, 0] = 0.05  # background: not scored
    std = torch.full((4, 4), 0.5)
    a = (3 * 2 + 2.4) / (3 * 4 + 2.4**2 + 0.05**2)  # least-squares fit of |mean| to |ref|
    r = np.sort(pixel_ratios(ref, mean, std))
    expected = [abs(2 * a - 1) / (0.5 * a)] * 3 + [abs(2.4 * a - 1) / (0.5 * a)]
    np.testing.assert_allclose(r, np.sort(expected), rtol=1e-6)


def test_pixel_ratios_score_only_inside_the_support() -> None:
    ref = torch.zeros(4, 4, dtype=torch.complex64)
    ref[1:3, 1:3] = 1.0
    support = torch.ones(4, 4, dtype=torch.bool)
    support[2, 2] = False  # masked by the reconstruction: mean and std are 0 there by design
    mean, std = ref * support, torch.full((4, 4), 0.5) * support
    assert np.isinf(pixel_ratios(ref, mean, std)).sum() == 1
    inside = pixel_ratios(ref, mean, std, support)
    assert inside.size == 3 and np.isfinite(inside).all()


def _entry(sampler: str = "dds", nfe: int = 25, k: int = 4, acc: int = 4) -> CalibrationEntry:
    setting = Setting(sampler, nfe, k, 5, acc)
    return CalibrationEntry(setting, 1.5, EMPIRICAL, 8, "synthetic", 0.7, 0.95)


def test_calibrate_std_exact_nearest_and_none(caplog: pytest.LogCaptureFixture) -> None:
    std = torch.ones(3, 3)
    want = Setting("dds", 25, 8, 5, 4)
    exact = calibrate_std(std, want, (_entry(), _entry(nfe=50)))
    assert exact.calibrated and "K=8 by the finite-K model" in exact.note
    assert exact.factor == pytest.approx(1.5 * finite_k_factor(8) / 2.0)
    assert torch.allclose(exact.std, std * exact.factor)
    near = calibrate_std(std, Setting("dds", 40, 4, 5, 8), (_entry(), _entry(nfe=50)))
    assert near.calibrated and near.note.startswith("nearest calibration dds nfe=50")
    assert "nearest calibration" in caplog.text
    none = calibrate_std(std, want, (_entry("song"),))
    assert not none.calibrated and none.factor == 1.0 and torch.equal(none.std, std)
    assert none.note.startswith("uncalibrated")


def test_acceleration_class() -> None:
    mask = torch.zeros(16, 16)
    mask[:, ::4] = 1
    assert acceleration_class(mask) == 4
    mask[:, 1] = 1
    assert acceleration_class(mask) == 4  # R = 3.2 -> 4
    with pytest.raises(ValueError, match="no sampled"):
        acceleration_class(torch.zeros(4, 4))


def test_card_block_round_trip_on_a_copy(tmp_path) -> None:
    before = DEFAULT_PRIOR_PATH.with_suffix(".json").read_bytes()
    stem = tmp_path / "mine"
    card = write_calibration(DEFAULT_PRIOR_PATH, calibration_block((_entry(),)), out=stem)
    assert DEFAULT_PRIOR_PATH.with_suffix(".json").read_bytes() == before
    assert json.loads(card.read_text())["weights_file"] == "mine.safetensors"
    assert entries_from_card({"calibration": read_calibration(stem)}) == (_entry(),)
    load_checkpoint(stem)  # the digest is of the weights: still valid
    shutil.copy(card, tmp_path / "bad.json")
    shutil.copy(stem.with_suffix(".safetensors"), tmp_path / "bad.safetensors")
    doc = json.loads(card.read_text())
    doc["calibration"]["entries"][0]["factor"] = -1
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="factor"):
        entries_from_card({"calibration": read_calibration(tmp_path / "bad")})


SHAPE = (16, 16)


def _problem():
    g = torch.Generator().manual_seed(0)
    prior = GaussianDenoiser.diagonal(
        torch.zeros(SHAPE, dtype=torch.complex64), torch.full(SHAPE, 0.2)
    )
    truth = prior.sample((), g)
    maps = torch.ones(1, *SHAPE, dtype=torch.complex64)
    mask = torch.zeros(SHAPE)
    mask[:, ::4] = 1
    mask[:, 6:10] = 1
    kspace = torch.fft.fftshift(torch.fft.fft2(truth, norm="ortho"))[None] * mask
    return prior, kspace, mask, maps


def test_reconstruct_applies_the_calibration_and_keeps_the_raw_std() -> None:
    prior, kspace, mask, maps = _problem()
    base = ReconConfig(nfe=4, num_samples=3, cg_iters=3, sigma_max=20.0, noise_sigma=0.01)
    entry = _entry(nfe=4, k=3, acc=acceleration_class(mask))
    runs = [
        reconstruct(kspace, mask, prior, cfg, maps=maps, generator=torch.Generator().manual_seed(1))
        for cfg in (base, ReconConfig(**{**base.__dict__, "calibration": (entry,)}))
    ]
    raw, cal = runs
    assert not raw.calibrated and raw.calibration_note.startswith("uncalibrated")
    assert cal.calibrated and cal.calibration_data == "synthetic"
    assert cal.std_raw is not None and torch.equal(cal.std_raw, raw.std)
    expected = 1.5 * finite_k_factor(3) / 2.0
    assert cal.calibration_factor == pytest.approx(expected)
    assert torch.allclose(cal.std, raw.std * expected)


def test_one_sample_says_it_has_no_std() -> None:
    prior, kspace, mask, maps = _problem()
    cfg = ReconConfig(nfe=4, num_samples=1, cg_iters=3, sigma_max=20.0, noise_sigma=0.01)
    out = reconstruct(kspace, mask, prior, cfg, maps=maps, generator=torch.Generator())
    assert not out.has_std and not out.calibrated
    assert out.calibration_note.startswith("K = 1")
    assert float(out.std.abs().max()) == 0.0
