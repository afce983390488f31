"""Calibrated std: the finite-K model on Gaussian Monte Carlo, conformal coverage on a synthetic
problem whose coverage is known exactly, nearest-setting lookup, the model card block, reconstruct."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.stats import norm

from diffusion_core.checkpoint import load_checkpoint, read_calibration, write_calibration
from diffusion_core.denoiser import GaussianDenoiser
from diffusion_core.masks import poisson_disc_mask, random_columns_mask
from diffusion_core.priors import DEFAULT_PRIOR_PATH
from diffusion_core.reconstruct import ReconConfig, reconstruct
from diffusion_core.uncertainty import (
    BIRGE,
    BIRGE_TOLERANCE,
    CRC,
    EMPIRICAL,
    UNRECORDED,
    UNRECORDED_MATRIX,
    CalibrationEntry,
    CaseScores,
    Setting,
    acceleration_class,
    calibrate_std,
    calibration_block,
    case_scores,
    data_residual_ratio,
    entries_from_card,
    finite_k_factor,
    fit_factor,
    fit_model,
    leave_one_out,
    leave_one_out_model,
    lookup,
    mask_sampling,
    matrix_size,
    merged,
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


def test_without_the_guarantee_many_cases_fit_the_mean_coverage_and_say_so() -> None:
    """n = 24: conformal risk control asks a mean coverage of 1 - ((n + 1) alpha - 1) / n = 0.990
    of the calibration cases; without the guarantee the fit puts their mean at 0.95 and the exact
    coverage of a fresh case averages 0.95, not above."""
    rng = np.random.default_rng(3)
    n = 24
    draws = [_cases(rng, n) for _ in range(60)]
    guaranteed = [fit_factor(c, [K] * n) for c in draws]
    assert {f.method for f in guaranteed} == {CRC}
    assert all(f.mean_coverage >= 1 - ((n + 1) * 0.05 - 1) / n - 1e-9 for f in guaranteed)
    fits = [fit_factor(c, [K] * n, guarantee=False) for c in draws]
    assert {f.method for f in fits} == {EMPIRICAL}
    assert all(abs(f.mean_coverage - 0.95) < 0.005 for f in fits)
    exact = np.array([_exact_coverage(f.factor) for f in fits])
    assert abs(exact.mean() - 0.95) < 0.01, exact.mean()
    assert np.mean([_exact_coverage(f.factor) for f in guaranteed]) > 0.975


def test_leave_one_out_never_fits_on_the_held_out_group() -> None:
    wide, narrow = np.full(100, 10.0), np.linspace(0.01, 1.0, 100)
    fits = leave_one_out([narrow, narrow, wide], [K] * 3, ["a", "a", "b"])
    # holding out b leaves only the narrow cases: a factor fitted on them alone
    assert fits[2].factor * finite_k_factor(K) == pytest.approx(0.95, abs=0.011)
    assert fits[0].factor == fits[1].factor == pytest.approx(10.0 / finite_k_factor(K))
    with pytest.raises(ValueError, match="only one"):
        leave_one_out([narrow], [K], ["a"])


# Synthetic problem for the noise term: case i has a sample std s_i (per pixel) and a noise term
# v_i = f sigma_i^2, and its error is Gaussian with variance s^2 + W v (W = 0.5: the mean keeps
# half the noise the samples do not show). With the right weight every case's ratio is |N(0, 1)|
# and a fresh case's coverage at half-width lam is 2 Phi(lam) - 1 whatever its noise; with the
# factor only it is 2 Phi(lam s / sqrt(s^2 + W v)) - 1, per case: both exact.
W = 0.5


def _noisy_case(rng: np.random.Generator, noise_var: float, pixels: int = 4000) -> CaseScores:
    std = rng.uniform(0.5, 1.5, size=pixels)
    error = np.abs(rng.normal(size=pixels) * np.sqrt(std**2 + W * noise_var))
    return CaseScores(error, std, noise_var)


def _exact_case_coverage(half_width: float, noise_weight: float, noise_var: float) -> float:
    """Exact coverage of a fresh case at noise_var (std uniform on [0.5, 1.5], by quadrature)."""
    std = np.linspace(0.5, 1.5, 2001)
    scale = np.sqrt(std**2 + noise_weight * noise_var) / np.sqrt(std**2 + W * noise_var)
    return float(np.mean(2 * norm.cdf(half_width * scale) - 1))


def test_noise_term_gives_every_noise_level_the_nominal_coverage() -> None:
    rng = np.random.default_rng(3)
    levels = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 0.25, 3.0]
    cases = [_noisy_case(rng, v) for v in levels]
    fit = fit_model(cases, [K] * len(cases))
    assert fit.noise_weight == W
    lam = fit.factor * finite_k_factor(K)
    assert lam == pytest.approx(1.96, abs=0.03)
    for v in (0.0, 1.0, 10.0):  # fresh cases, quiet to noisier than any fitted on
        assert abs(_exact_case_coverage(lam, W, v) - 0.95) < 0.005, v
    # the factor alone, fitted on the same cases, over-covers quiet and under-covers noisy ones
    only = fit_factor([c.ratios() for c in cases], [K] * len(cases))
    lam0 = only.factor * finite_k_factor(K)
    assert _exact_case_coverage(lam0, 0.0, 0.0) > 0.98
    assert _exact_case_coverage(lam0, 0.0, 10.0) < 0.85


def test_fit_model_keeps_the_factor_only_model_without_noise_and_loo_holds_out() -> None:
    rng = np.random.default_rng(4)
    quiet = [_noisy_case(rng, 0.0) for _ in range(4)]
    fit = fit_model(quiet, [K] * 4)
    assert fit.noise_weight == 0.0
    assert fit.factor == fit_factor([c.ratios() for c in quiet], [K] * 4).factor
    wide = CaseScores(np.full(100, 10.0), np.ones(100), 0.0)
    narrow = CaseScores(np.linspace(0.01, 1.0, 100), np.ones(100), 0.0)
    fits = leave_one_out_model([narrow, narrow, wide], [K] * 3, ["a", "a", "b"])
    assert fits[2].factor * finite_k_factor(K) == pytest.approx(0.95, abs=0.011)
    assert fits[0].factor == pytest.approx(10.0 / finite_k_factor(K))


def test_case_scores_ratios_are_the_pixel_ratios_and_add_the_noise() -> None:
    ref = torch.zeros(4, 4, dtype=torch.complex64)
    ref[1:3, 1:3] = 1.0
    mean = ref * 1.5
    mean[1, 1] = 2.0
    std = torch.full((4, 4), 0.3)
    c = case_scores(ref, mean, std, noise_var=0.16)
    np.testing.assert_allclose(c.ratios(), pixel_ratios(ref, mean, std))
    np.testing.assert_allclose(c.ratios(1.0), c.ratios() * 0.3 / 0.5)  # sqrt(0.09 + 0.16)


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


def test_mask_sampling_tells_lines_from_2d() -> None:
    assert mask_sampling(random_columns_mask((32, 32), 4.0, 8, 0)) == "1d"
    assert mask_sampling(random_columns_mask((32, 32), 4.0, 8, 0).T) == "1d"  # rows
    assert mask_sampling(poisson_disc_mask((32, 32), 8.0, 12, 0)) == "2d"
    for seed in range(10):  # every Poisson mask, also at low acceleration
        assert mask_sampling(poisson_disc_mask((48, 40), 2.0 + seed, 12, seed)) == "2d"


def test_asymmetric_echo_and_longer_calibration_lines_are_still_lines() -> None:
    lines = random_columns_mask((48, 40), 4.0, 8, 0).T  # rows are readouts along kx
    echo = lines.clone()
    echo[:, :12] = 0  # asymmetric echo: the first 12 of 40 readout samples not measured
    assert mask_sampling(echo) == "1d" and mask_sampling(echo.T) == "1d"
    mixed = echo.clone()
    mixed[20:28] = 1  # calibration lines with the whole readout
    assert mask_sampling(mixed) == "1d"
    scattered = echo.clone()
    scattered[lines[:, 0] != 0, 30] = 0  # a gap inside each readout: not lines
    assert mask_sampling(scattered) == "2d"
    short = torch.zeros((48, 40))
    short[::4, 15:20] = 1  # a few short segments
    short[0, :] = 1  # against one full line: shorter than half of what they span
    assert mask_sampling(short) == "2d"


def test_lookup_picks_the_entry_of_each_mask_class() -> None:
    """Poisson R=8 and 1D R=8 have the same acceleration class; the sampling tells them apart."""
    entries = tuple(
        CalibrationEntry(Setting("dds", 25, 4, 5, acc, dims), f, EMPIRICAL, 8, "syn", 0.6, 0.95)
        for acc, dims, f in ((4, "1d", 1.8), (8, "1d", 2.5), (8, "2d", 2.1))
    )
    for mask, factor in (
        (random_columns_mask((64, 64), 4.0, 8, 0), 1.8),
        (random_columns_mask((64, 64), 8.0, 8, 0), 2.5),
        (poisson_disc_mask((64, 64), 8.0, 12, 0), 2.1),
    ):
        want = Setting("dds", 25, 4, 5, acceleration_class(mask), mask_sampling(mask))
        assert acceleration_class(mask) == (4 if factor == 1.8 else 8)
        found = lookup(entries, want)
        assert found is not None and found.factor == factor and found.setting == want
    # R=4 Poisson has no entry: 1D R=4 and 2D R=8 are both at distance 1; one is used, said so
    near = calibrate_std(torch.ones(2, 2), Setting("dds", 25, 4, 5, 4, "2d"), entries)
    assert near.note.startswith("nearest calibration")


def test_an_old_single_entry_card_still_works(caplog: pytest.LogCaptureFixture) -> None:
    """A block written before ``sampling`` and ``noise_weight``: read as sampling unrecorded and
    the factor-only model, used as the nearest entry (said), replaced by a new fit of its setting."""
    old = {
        "model": "std = factor * finite_k_factor(K) * std_raw / 2",
        "entries": [
            {
                "setting": {
                    "sampler": "dds",
                    "nfe": 25,
                    "num_samples": 4,
                    "cg_iters": 5,
                    "acceleration": 4,
                },
                "factor": 1.8524,
                "method": "empirical mean coverage",
                "cases": 10,
                "data": "10 held-out cases",
                "coverage_before": 0.58,
                "coverage_after": 0.95,
                "alpha": 0.05,
            }
        ],
    }
    (entry,) = entries_from_card({"calibration": old})
    assert entry.setting.sampling == UNRECORDED and entry.noise_weight == 0.0
    std = torch.full((2, 2), 0.1)
    cal = calibrate_std(std, Setting("dds", 25, 4, 5, 4, "1d"), (entry,), noise_var=5.0)
    assert cal.calibrated and "nearest calibration" in cal.note
    assert torch.allclose(cal.std, std * 1.8524 * finite_k_factor(4) / 2.0)  # no noise term
    new = CalibrationEntry(Setting("dds", 25, 4, 5, 4, "1d"), 1.7, EMPIRICAL, 10, "n", 0.6, 0.95)
    other = CalibrationEntry(Setting("dds", 25, 4, 5, 8, "1d"), 2.4, EMPIRICAL, 10, "n", 0.5, 0.95)
    assert merged((entry,), (new,)) == (new,)
    assert merged((entry,), (other,)) == (entry, other)


def test_matrix_dimension_picks_the_nearest_grid_and_old_entries_still_match() -> None:
    def entry(matrix: int, factor: float, cg: int = 10) -> CalibrationEntry:
        setting = Setting("dds", 25, 4, cg, 4, "1d", matrix)
        return CalibrationEntry(setting, factor, EMPIRICAL, 10, f"{matrix}", 0.6, 0.95)

    grid = (entry(96, 1.9), entry(128, 1.7), entry(192, 1.5))
    # 256 x 256 and 320 x 260 lie nearest 192 in log2; 128 x 100 (sqrt 113) nearest 128
    assert matrix_size(torch.ones(256, 256)) == 256 and matrix_size(torch.ones(128, 100)) == 113
    for shape, want in (((256, 256), 192), ((320, 260), 192), ((128, 100), 128), ((64, 64), 96)):
        got = lookup(grid, Setting("dds", 25, 4, 10, 4, "1d", matrix_size(torch.ones(shape))))
        assert got is not None and got.setting.matrix == want, shape
    # an exact match on everything but the matrix says it was the nearest, with both grids
    cal = calibrate_std(torch.ones(2, 2), Setting("dds", 25, 4, 10, 4, "1d", 256), grid)
    assert "nearest calibration" in cal.note and "matrix~192" in cal.note
    assert "matrix~256" in cal.note and cal.factor == pytest.approx(1.5 * finite_k_factor(4) / 2)
    # the matrix does not outweigh a wrong sampler setting: a 10-iteration entry on another grid
    # beats a 3-iteration one on the same grid (log2(10/3) = 1.74 > log2(192/128) = 0.58)
    near = lookup((entry(128, 1.7), entry(192, 1.5, cg=3)), Setting("dds", 25, 4, 10, 4, "1d", 192))
    assert near is not None and near.setting.matrix == 128
    # an entry without a matrix (cards before it) matches any, at 0.5, and is replaced on merge
    old = CalibrationEntry(Setting("dds", 25, 4, 10, 4, "1d"), 1.8, EMPIRICAL, 10, "o", 0.6, 0.95)
    assert old.setting.matrix == UNRECORDED_MATRIX
    assert Setting("dds", 25, 4, 10, 4, "1d", 96).distance(old.setting) == 0.5
    assert merged((old,), (grid[2],)) == (grid[2],)
    assert merged(grid[:2], (grid[2],)) == grid  # recorded grids are kept side by side
    (back,) = entries_from_card({"calibration": calibration_block((grid[0],))})
    assert back == grid[0]
    for bad in (-96, 96.5, "96"):
        d = grid[0].to_dict()
        d["setting"]["matrix"] = bad
        with pytest.raises(ValueError, match="matrix"):
            CalibrationEntry.from_dict(d)


def test_noise_term_applied_by_calibrate_std() -> None:
    entry = CalibrationEntry(
        Setting("dds", 25, 4, 5, 4, "1d"), 1.6, EMPIRICAL, 10, "n", 0.6, 0.95, noise_weight=0.25
    )
    std = torch.tensor([[0.0, 0.3], [0.4, 1.0]])
    cal = calibrate_std(std, entry.setting, (entry,), noise_var=0.64)
    f = 1.6 * finite_k_factor(4) / 2.0
    assert cal.factor == pytest.approx(f) and "noise_weight 0.25" in cal.note
    expected = f * torch.tensor([[0.4, 0.5], [0.32**0.5, 1.16**0.5]])  # sqrt(std^2 + 0.16)
    assert torch.allclose(cal.std, expected)


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


def _entry_for(mask: torch.Tensor, **extra: float) -> CalibrationEntry:
    """A factor-1.5 entry for the setting of :func:`_calibrated` on ``mask``."""
    setting = Setting("dds", 4, 3, 3, acceleration_class(mask), mask_sampling(mask))
    return CalibrationEntry(setting, 1.5, EMPIRICAL, 8, "synthetic", 0.7, 0.95, **extra)


def _calibrated(entry: CalibrationEntry) -> ReconConfig:
    return ReconConfig(
        nfe=4, num_samples=3, cg_iters=3, sigma_max=20.0, noise_sigma=0.01, calibration=(entry,)
    )


def test_reconstruct_adds_the_noise_the_mean_keeps() -> None:
    prior, kspace, mask, maps = _problem()
    cfg = _calibrated(_entry_for(mask, noise_weight=2.0))
    out = reconstruct(
        kspace, mask, prior, cfg, maps=maps, generator=torch.Generator().manual_seed(1)
    )
    assert out.std_raw is not None and "noise_weight 2" in out.calibration_note
    noise_var = float(mask.mean()) * (0.01 * out.scale) ** 2
    expected = 1.5 * finite_k_factor(3) / 2.0 * (out.std_raw**2 + 2.0 * noise_var).sqrt()
    assert torch.allclose(out.std, expected)
    assert float((out.std - out.std_raw * out.calibration_factor).min()) > 0


def test_one_sample_says_it_has_no_std() -> None:
    prior, kspace, mask, maps = _problem()
    cfg = ReconConfig(nfe=4, num_samples=1, cg_iters=3, sigma_max=20.0, noise_sigma=0.01)
    out = reconstruct(kspace, mask, prior, cfg, maps=maps, generator=torch.Generator())
    assert not out.has_std and not out.calibrated
    assert out.calibration_note.startswith("K = 1")
    assert float(out.std.abs().max()) == 0.0


# A synthetic problem whose right residual exponent is known: each case's errors are wider than
# sqrt(std^2 + W v) by sqrt(rho) (the Birge ratio of its data misfit rho), so the exponent 1/2
# makes every case alike and a fresh case's coverage 2 Phi(lam) - 1 whatever its rho.
def _misfit_case(rng: np.random.Generator, rho: float, noise_var: float = 1.0) -> CaseScores:
    c = _noisy_case(rng, noise_var, pixels=20_000)
    return CaseScores(c.error * max(rho, 1.0) ** 0.5, c.std, noise_var, rho)


def test_residual_exponent_is_found_and_gives_every_misfit_the_nominal_coverage() -> None:
    rng = np.random.default_rng(5)
    rhos = [0.9, 1.0, 1.5, 2.0, 2.5, 4.0, 1.2, 3.0]
    cases = [
        _misfit_case(rng, r, v) for r, v in zip(rhos, [0.5, 1, 2, 4, 0.5, 1, 2, 4], strict=True)
    ]
    fit = fit_model(cases, [K] * len(cases), residual_exponents=(0.0, 0.25, BIRGE, 1.0))
    assert (fit.residual_exponent, fit.noise_weight) == (BIRGE, W)
    lam = fit.factor * finite_k_factor(K)
    assert lam == pytest.approx(1.96, abs=0.025)
    for rho in (1.0, 2.0, 6.0):  # fresh cases, up to a misfit beyond any fitted on
        fresh = _misfit_case(rng, rho)
        assert abs(np.mean(fresh.ratios(W, BIRGE) <= lam) - 0.95) < 0.012, rho
    # without the exponent the factor over-covers well-fitting cases and under-covers misfits
    old = fit_model(cases, [K] * len(cases))
    assert old.residual_exponent == 0.0
    lam0 = old.factor * finite_k_factor(K)
    assert np.mean(_misfit_case(rng, 1.0).ratios(old.noise_weight) <= lam0) > 0.98
    assert np.mean(_misfit_case(rng, 6.0).ratios(old.noise_weight) <= lam0) < 0.85
    # leave-one-out passes the exponent and the tolerance on
    fits = leave_one_out_model(
        cases, [K] * 8, list("aabbccdd"), residual_exponents=(BIRGE,), residual_tolerance=1.25
    )
    assert all((f.residual_exponent, f.residual_tolerance) == (BIRGE, 1.25) for f in fits)


def test_data_residual_ratio_is_the_reduced_chi_square() -> None:
    g = torch.Generator().manual_seed(2)
    image = torch.randn(16, 12, dtype=torch.complex64, generator=g)
    maps = torch.randn(3, 16, 12, dtype=torch.complex64, generator=g)
    mask = torch.zeros(16, 12)
    mask[::2] = 1
    sigma = 0.1
    noise = sigma * torch.complex(*torch.randn(2, 3, 16, 12, generator=g))
    dims = (-2, -1)
    clean = torch.fft.fftshift(
        torch.fft.fft2(torch.fft.ifftshift(maps * image, dim=dims), norm="ortho"), dim=dims
    )
    kspace = (clean + noise) * mask
    rho = data_residual_ratio(kspace, mask, maps, image, sigma)
    assert rho == pytest.approx(1.0, abs=0.15)  # 576 complex entries: rho ~ 1 +- 0.06
    # a mean off by a quarter of the image: noise plus a misfit of |clean / 4|^2, exactly
    off = data_residual_ratio(kspace, mask, maps, 0.75 * image, sigma)
    res = (0.25 * clean + noise)[:, mask != 0]
    assert off == pytest.approx(float(res.abs().square().mean()) / (2 * sigma**2), rel=1e-4)
    assert off > 3


def test_residual_inflation_applied_by_calibrate_std_and_old_entries_unchanged() -> None:
    setting = Setting("dds", 25, 4, 5, 4, "1d")
    old = CalibrationEntry(setting, 1.6, EMPIRICAL, 10, "n", 0.6, 0.95, noise_weight=0.25)
    new = replace(old, residual_exponent=BIRGE)
    std = torch.tensor([[0.0, 0.3], [0.4, 1.0]])
    base = calibrate_std(std, setting, (old,), noise_var=0.64)
    # an entry without the exponent ignores the residual ratio; one with it multiplies by sqrt(rho)
    assert torch.equal(calibrate_std(std, setting, (old,), 0.64, residual_ratio=4.0).std, base.std)
    cal = calibrate_std(std, setting, (new,), 0.64, residual_ratio=4.0)
    assert torch.allclose(cal.std, 2.0 * base.std) and "rho 4.000" in cal.note
    below = calibrate_std(std, setting, (new,), 0.64, residual_ratio=0.8)
    assert torch.allclose(below.std, base.std)  # a fit within the noise never narrows
    tolerant = replace(new, residual_tolerance=BIRGE_TOLERANCE)
    within = calibrate_std(std, setting, (tolerant,), 0.64, residual_ratio=1.2)
    assert torch.allclose(within.std, base.std)  # a misfit within the tolerance: unchanged
    beyond = calibrate_std(std, setting, (tolerant,), 0.64, residual_ratio=5.0)
    assert torch.allclose(beyond.std, 2.0 * base.std)  # sqrt(5 / 1.25)
    # the card round trip keeps it, and an old dict (no key) reads as exponent 0
    assert CalibrationEntry.from_dict(new.to_dict()) == new
    d = old.to_dict()
    del d["residual_exponent"], d["residual_tolerance"]
    assert CalibrationEntry.from_dict(d) == old
    with pytest.raises(ValueError, match="residual_exponent"):
        CalibrationEntry.from_dict({**new.to_dict(), "residual_exponent": -1.0})
    with pytest.raises(ValueError, match="residual_tolerance"):
        CalibrationEntry.from_dict({**new.to_dict(), "residual_tolerance": 0.0})


def test_reconstruct_inflates_by_the_residual_ratio_it_reports() -> None:
    prior, kspace, mask, maps = _problem()
    entry = _entry_for(mask, residual_exponent=BIRGE)
    runs = [
        reconstruct(
            kspace,
            mask,
            prior,
            _calibrated(e),
            maps=maps,
            generator=torch.Generator().manual_seed(1),
        )
        for e in (replace(entry, residual_exponent=0.0), entry)
    ]
    plain, inflated = runs
    rho = data_residual_ratio(kspace, mask, maps, plain.mean, 0.01 * plain.scale)
    assert plain.residual_ratio == pytest.approx(rho) and inflated.residual_ratio == pytest.approx(
        rho
    )
    assert torch.allclose(inflated.std, plain.std * max(rho, 1.0) ** 0.5)


def test_phase_encode_axis_is_the_axis_lines_are_chosen_along() -> None:
    from diffusion_core.masks import phase_encode_axis

    columns = random_columns_mask((48, 40), 4.0, 8, 0)  # whole ky columns chosen along kx
    assert phase_encode_axis(columns) == 1 and phase_encode_axis(columns.T) == 0
    assert phase_encode_axis(poisson_disc_mask((48, 40), 4.0, 12, 0)) is None
    block = torch.zeros((48, 40))
    block[:, 16:24] = 1  # a calibration block alone: its runs along ky are the longer ones
    assert phase_encode_axis(block) == 1 and phase_encode_axis(block.T) == 0


def test_lookup_ties_do_not_depend_on_the_order_of_the_card() -> None:
    """Class 2 at 10 CG iterations: a class-2 entry at 5 and a class-4 entry at 10 are both at
    distance 1; the one of the same acceleration is used, whichever comes first in the card."""

    def entry(cg: int, acc: int, factor: float) -> CalibrationEntry:
        setting = Setting("dds", 25, 4, cg, acc, "1d", 128)
        return CalibrationEntry(setting, factor, EMPIRICAL, 10, "t", 0.6, 0.95)

    same_r, same_cg = entry(5, 2, 1.885), entry(10, 4, 1.689)
    want = Setting("dds", 25, 4, 10, 2, "1d", 128)
    assert same_r.setting.distance(want) == same_cg.setting.distance(want) == 1.0
    for card in ((same_r, same_cg), (same_cg, same_r)):
        assert lookup(card, want) is same_r
