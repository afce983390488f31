"""K = 1's width: the linear-Gaussian posterior std by perturb-and-MAP against its closed form,
and its calibration entries kept apart from those of the samples' std."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import norm

from diffusion_core.data_consistency import SenseDataConsistency
from diffusion_core.denoiser import GaussianDenoiser
from diffusion_core.fft import fft2c
from diffusion_core.masks import random_columns_mask
from diffusion_core.reconstruct import ReconConfig, reconstruct
from diffusion_core.uncertainty import (
    EMPIRICAL,
    CalibrationEntry,
    Setting,
    acceleration_class,
    calibrate_std,
    finite_k_factor,
    fit_factor,
    interval_multiplier,
    linear_posterior_std,
    lookup,
    mask_sampling,
    matrix_size,
)


def _small(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ny, nx, coils = 8, 6, 3
    maps = torch.randn(coils, ny, nx, dtype=torch.complex128, generator=g)
    maps[:, 0, :] = 0  # a row no coil sees
    mask = (torch.rand(ny, nx, generator=g) < 0.4).double()
    mask[ny // 2, nx // 2] = 1
    support = torch.ones(ny, nx, dtype=torch.bool)
    support[:, -1] = False  # and a column outside the object
    return maps, mask, support


def _closed_form(
    maps: torch.Tensor, mask: torch.Tensor, support: torch.Tensor, sigma: float, tau: float
) -> torch.Tensor:
    """E|x_i - mean_i|^2 = C_ii, C = (A^H A / (2 sigma^2) + I / (2 tau^2))^-1 on the pixels of
    the support some coil sees (A = M F S, dense), 0 elsewhere."""
    ny, nx = mask.shape
    inside = (support & (maps.abs().sum(0) > 0)).flatten()
    cols = []
    for i in torch.nonzero(inside).flatten().tolist():
        e = torch.zeros(ny * nx, dtype=maps.dtype)
        e[i] = 1
        cols.append((mask * fft2c(maps * e.reshape(ny, nx))).flatten())
    a = torch.stack(cols, 1)
    n = a.shape[1]
    c = torch.linalg.inv(a.conj().T @ a / (2 * sigma**2) + torch.eye(n) / (2 * tau**2))
    out = torch.zeros(ny * nx, dtype=torch.float64)
    out[inside] = c.diagonal().real
    return out.reshape(ny, nx)


def test_linear_width_matches_the_closed_form_and_is_zero_off_the_support() -> None:
    maps, mask, support = _small()
    sigma, tau, probes = 0.3, 0.5, 6000
    dc = SenseDataConsistency(maps, mask, torch.zeros_like(maps), sigma, 200, support)
    got = linear_posterior_std(dc, tau, probes, torch.Generator().manual_seed(1)) ** 2
    want = _closed_form(maps, mask, support, sigma, tau)
    seen = want > 0
    assert int(seen.sum()) == 7 * 5 and float(got[~seen].abs().max()) == 0.0
    # a mean of |d|^2 over P complex Gaussian draws: relative std 1/sqrt(P) = 1.3 %
    rel = (got[seen] / want[seen] - 1).abs()
    assert float(rel.max()) < 5 / probes**0.5, rel.max()
    # the data pull the width below the prior's 2 tau^2 where they say something, not above
    assert float(want[seen].max()) < 2 * tau**2
    # less noise, narrower everywhere the data reach
    quiet = _closed_form(maps, mask, support, sigma / 3, tau)
    assert bool((quiet[seen] < want[seen]).all())


def test_interval_multiplier_is_normal_for_one_and_student_for_several() -> None:
    assert interval_multiplier(1) == pytest.approx(norm.ppf(0.975))
    assert interval_multiplier(4) == finite_k_factor(4)
    # a fit of K = 1 widths whose errors are N(0, width^2): factor z_0.975 / z_0.975 = 1
    rng = torch.Generator().manual_seed(3)
    ratios = [torch.randn(40_000, generator=rng).abs().numpy() for _ in range(4)]
    fit = fit_factor(ratios, [1] * 4, guarantee=False)
    assert fit.factor == pytest.approx(1.0, abs=0.03)


def test_k1_entries_serve_k1_only() -> None:
    def entry(k: int, factor: float) -> CalibrationEntry:
        return CalibrationEntry(
            Setting("dds", 25, k, 5, 4, "1d", 128), factor, EMPIRICAL, 10, f"K{k}", 0.5, 0.95
        )

    single, several = entry(1, 3.0), entry(4, 1.8)
    assert "linear-Gaussian width" in single.setting.label()
    assert lookup((several,), Setting("dds", 25, 1, 5, 4, "1d", 128)) is None
    assert lookup((single,), Setting("dds", 25, 8, 5, 4, "1d", 128)) is None
    assert lookup((single, several), Setting("dds", 25, 1, 10, 8, "1d", 96)) is single
    cal = calibrate_std(torch.ones(2, 2), Setting("dds", 25, 1, 5, 4, "1d", 128), (several,))
    assert not cal.calibrated and cal.note.startswith("uncalibrated")


def _problem() -> tuple[GaussianDenoiser, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ny, nx, coils = 24, 20, 4
    prior = GaussianDenoiser.diagonal(
        torch.zeros((ny, nx), dtype=torch.complex64), torch.full((ny, nx), 0.2)
    )
    x = prior.sample((), g)
    maps = torch.randn(coils, ny, nx, dtype=torch.complex64, generator=g) / coils**0.5
    mask = random_columns_mask((ny, nx), 3.0, 4, 0)
    kspace = mask * fft2c(maps * x) + 0.01 * mask * torch.randn(
        coils, ny, nx, dtype=torch.complex64, generator=g
    )
    return prior, kspace, mask, maps


def test_reconstruct_sends_the_calibrated_linear_width_for_one_sample_when_asked() -> None:
    prior, kspace, mask, maps = _problem()
    base = ReconConfig(nfe=4, num_samples=1, cg_iters=3, sigma_max=20.0, noise_sigma=0.01)
    setting = Setting(
        "dds", 4, 1, 3, acceleration_class(mask), mask_sampling(mask), matrix_size(mask)
    )
    entry = CalibrationEntry(setting, 2.5, EMPIRICAL, 12, "synthetic K=1", 0.4, 0.95)
    runs = {
        name: reconstruct(
            kspace, mask, prior, cfg, maps=maps, generator=torch.Generator().manual_seed(2)
        )
        for name, cfg in (
            ("off", base),
            ("raw", ReconConfig(**{**base.__dict__, "linear_width": True})),
            (
                "cal",
                ReconConfig(**{**base.__dict__, "linear_width": True, "calibration": (entry,)}),
            ),
        )
    }
    assert not runs["off"].has_std and float(runs["off"].std.abs().max()) == 0.0
    raw, cal = runs["raw"], runs["cal"]
    assert raw.has_std and not raw.calibrated and raw.calibration_note.startswith("uncalibrated")
    assert (raw.std_kind, runs["off"].std_kind) == ("linear", "samples")
    # the same draws up to the width: the mean does not change
    assert torch.equal(raw.mean, runs["off"].mean)
    assert raw.std_raw is not None and float(raw.std_raw.min()) > 0
    # in data units (the mean's), below the prior's spread sqrt(2) 0.5 times the scale
    assert float(raw.std_raw.max()) < 2**0.5 * 0.5 * raw.scale
    assert cal.calibrated and cal.calibration_data == "synthetic K=1"
    assert cal.calibration_factor == pytest.approx(2.5 * norm.ppf(0.975) / 2)
    assert cal.std_raw is not None and torch.allclose(cal.std, cal.std_raw * cal.calibration_factor)
