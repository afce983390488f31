"""reconstruct(): scaling in and out, seeds, noise handling, coil maps, progress, bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from complex_checks import random_complex
from gaussian_problem import smooth_circulant_prior, smooth_maps

from diffusion_core.classical import cg_sense, zero_filled
from diffusion_core.denoiser import GaussianDenoiser
from diffusion_core.fft import fft2c
from diffusion_core.reconstruct import ReconConfig, ReconProgress, reconstruct

C64 = torch.complex64
SHAPE = (24, 24)
FAST = ReconConfig(sampler="dds", nfe=10, num_samples=3, cg_iters=4, sigma_max=20.0)


def _prior() -> GaussianDenoiser:
    return smooth_circulant_prior(SHAPE)


def _mask(regular: bool = True) -> torch.Tensor:
    """Every third column and 6 ACS columns; not ``regular``: two lines moved off that grid."""
    mask = torch.zeros(SHAPE)
    mask[:, ::3] = 1
    mask[:, 9:15] = 1
    if not regular:
        mask[:, [3, 18]] = 0
        mask[:, [4, 19]] = 1
    return mask


def _data(scale: float = 1.0, noise: float = 0.02, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    truth = _prior().sample((), g)
    maps = smooth_maps(4, SHAPE).to(C64)
    kspace = (fft2c(maps * truth) + noise * random_complex((4, *SHAPE), g)) * _mask()
    return scale * truth, scale * kspace, maps


def test_scale_in_and_out_is_exact() -> None:
    _, kspace, maps = _data()

    def run(k):
        return reconstruct(
            k, _mask(), _prior(), FAST, maps=maps, generator=torch.Generator().manual_seed(1)
        )

    a, b = run(kspace), run(1000.0 * kspace)
    assert math.isclose(b.scale, 1000.0 * a.scale, rel_tol=1e-4)
    torch.testing.assert_close(
        b.mean, 1000.0 * a.mean, rtol=1e-3, atol=1e-3 * float(b.mean.abs().max())
    )
    torch.testing.assert_close(b.std, 1000.0 * a.std, rtol=1e-3, atol=1e-3 * float(b.std.max()))


def test_outputs_seeds_and_quality() -> None:
    truth, kspace, maps = _data(scale=50.0)
    mask = _mask()
    cov = 2.0 * (0.02 * 50.0) ** 2 * torch.eye(4, dtype=C64)  # the true (white) noise covariance

    def run(seed: int):
        g = torch.Generator().manual_seed(seed)
        return reconstruct(kspace, mask, _prior(), FAST, maps=maps, noise_cov=cov, generator=g)

    r1, r2, r3 = run(3), run(3), run(4)
    assert r1.samples.shape == (3, *SHAPE) and r1.samples.dtype == C64
    assert r1.std.shape == SHAPE and not r1.std.is_complex() and float(r1.std.min()) > 0
    torch.testing.assert_close(r1.mean, r1.samples.mean(0))
    assert torch.equal(r1.samples, r2.samples)
    assert not torch.allclose(r1.samples, r3.samples)
    # whitened (W = I / sqrt(2)), then divided by their median norm: unit RSS again
    torch.testing.assert_close(r1.maps, maps, rtol=1e-5, atol=1e-6)

    def err(im: torch.Tensor) -> float:
        return float((im - truth).norm() / truth.norm())

    # the mean is in whitened units (the data times W): truth / sqrt(2) here
    assert err(math.sqrt(2.0) * r1.mean) < min(
        err(zero_filled(kspace, mask, maps)), err(cg_sense(kspace, mask, maps))
    )


def test_noise_covariance_prewhitens_and_sets_noise_level() -> None:
    _, kspace, maps = _data(scale=10.0)
    g = torch.Generator().manual_seed(5)
    mix = torch.eye(4, dtype=C64) + 0.3 * random_complex((4, 4), g)
    cov = 0.05 * mix @ mix.mH
    r = reconstruct(kspace, _mask(), _prior(), FAST, maps=maps, noise_cov=cov, generator=g)
    assert math.isclose(r.noise_sigma * r.scale, 1 / math.sqrt(2), rel_tol=1e-6)
    assert not torch.allclose(r.maps, maps)  # the given maps were whitened with the data
    assert torch.isfinite(r.mean).all()


def test_noise_level_estimated_from_kspace_corners() -> None:
    _, kspace, maps = _data(noise=0.0)
    g = torch.Generator().manual_seed(6)
    noisy = (kspace + 0.3 * random_complex(tuple(kspace.shape), g)) * _mask()
    r = reconstruct(noisy, _mask(), _prior(), FAST, maps=maps, generator=g)
    assert 0.2 < r.noise_sigma * r.scale < 0.45  # per real channel; the corners hold little signal


def test_espirit_maps_when_not_given_and_progress_reports() -> None:
    _, kspace, _ = _data(scale=10.0)
    seen: list[ReconProgress] = []
    cfg = ReconConfig(sampler="score_mri", nfe=6, num_samples=2, cg_iters=3, sigma_max=20.0)
    r = reconstruct(
        kspace,
        _mask(),
        _prior(),
        cfg,
        generator=torch.Generator().manual_seed(7),
        progress=seen.append,
    )
    assert r.maps.shape == kspace.shape and float(r.maps.abs().max()) > 0
    assert [p.step for p in seen] == [1, 2, 3] * 2 and {p.first_sample for p in seen} == {0, 1}
    assert all(p.total_steps == 3 and p.num_samples == 2 for p in seen)


@pytest.mark.parametrize("sampler", ["song", "dps", "score_mri_ssos"])
def test_other_samplers_run(sampler: str) -> None:
    _truth, kspace, maps = _data(scale=10.0)
    cfg = ReconConfig(
        sampler=sampler, nfe=8, num_samples=2, cg_iters=3, sigma_max=20.0, batch_size=2
    )
    r = reconstruct(
        kspace, _mask(), _prior(), cfg, maps=maps, generator=torch.Generator().manual_seed(8)
    )
    assert r.samples.shape == (2, *SHAPE) and torch.isfinite(r.mean).all()
    if sampler == "score_mri_ssos":
        assert float(r.mean.imag.abs().max()) == 0 and float(r.mean.real.min()) >= 0


def test_bad_input() -> None:
    _, kspace, maps = _data()
    with pytest.raises(ValueError, match="num_samples"):
        ReconConfig(num_samples=0)
    with pytest.raises(ValueError, match="sampler"):
        ReconConfig(sampler="ddpm")
    with pytest.raises(ValueError, match="no sampled"):
        reconstruct(kspace, torch.zeros(SHAPE), _prior(), FAST, maps=maps)
    with pytest.raises(ValueError, match="mask"):
        reconstruct(kspace, torch.ones(3, 3), _prior(), FAST, maps=maps)
    with pytest.raises(ValueError, match="maps"):
        reconstruct(kspace, _mask(), _prior(), FAST, maps=maps[:2])


def test_support_is_reported_and_bad_supports_are_named() -> None:
    _, kspace, maps = _data(scale=10.0)
    blind = maps.clone()
    blind[:, :, :6] = 0  # no coil sees the first 6 columns
    g = torch.Generator().manual_seed(9)
    r = reconstruct(kspace, _mask(), _prior(), FAST, maps=blind, generator=g)
    assert r.support.dtype == torch.bool and not bool(r.support[:, :6].any())
    assert bool(r.support[:, 6:].all())
    assert float(r.mean[:, :6].abs().max()) == 0.0 and float(r.std[:, :6].max()) == 0.0
    assert float(r.mean[:, 6:].abs().min()) > 0
    with pytest.raises(ValueError, match="support: is empty"):
        reconstruct(kspace, _mask(), _prior(), FAST, maps=maps, support=torch.zeros(SHAPE))
    left = torch.zeros(SHAPE, dtype=torch.bool)
    left[:, :6] = True
    with pytest.raises(ValueError, match="support: no coil sees"):
        reconstruct(kspace, _mask(), _prior(), FAST, maps=blind, support=left)


def test_held_back_entries_leave_the_calibration_block_and_whole_columns() -> None:
    from diffusion_core.calibration import calibration_region
    from diffusion_core.masks import poisson_disc_mask
    from diffusion_core.reconstruct import held_back_entries

    mask = poisson_disc_mask((48, 48), 4.0, 12, 0)
    rows, cols = calibration_region(mask)
    held = held_back_entries(mask, 0.2)
    outside = (mask != 0).clone()
    outside[rows, cols] = False
    assert not held[rows, cols].any() and bool((mask[held] != 0).all())
    assert int(held.sum()) == int(outside.sum() * 0.2)
    assert torch.equal(held, held_back_entries(mask, 0.2))  # fixed seed: the same split
    columns = held_back_entries(_mask(), 0.5, columns=True)
    assert bool((columns.all(0) | ~columns.any(0)).all())  # whole columns only
    # sampled columns 0 3 6 18 21 lie outside the calibration block (9-15): half of 5 -> 2
    assert calibration_region(_mask())[1] == slice(9, 16)
    assert not columns[:, 9:16].any() and int(columns.any(0).sum()) == 2


def test_cg_select_keeps_the_candidate_that_predicts_held_back_data_best() -> None:
    from diffusion_core.masks import poisson_disc_mask

    g = torch.Generator().manual_seed(0)
    truth = _prior().sample((), g)
    maps = smooth_maps(4, SHAPE).to(C64)
    mask = poisson_disc_mask(SHAPE, 2.0, 8, 0)
    kspace = (fft2c(maps * truth) + 0.02 * random_complex((4, *SHAPE), g)) * mask
    config = ReconConfig(sampler="dds", nfe=6, num_samples=2, cg_iters=4, cg_select=(1, 3, 8))
    out = reconstruct(kspace, mask, _prior(), config, maps=maps, generator=g)
    assert set(out.cg_scores) == {1, 3, 8}
    assert out.cg_iters == min(out.cg_scores, key=out.cg_scores.__getitem__)
    # a reduced chi-square: the held-back entries' noise alone gives ~1, so none is far below
    assert min(out.cg_scores.values()) > 0.7
    # 1D masks: held-back lines are noise-dominated, the rule is skipped
    skipped = reconstruct(kspace, _mask(), _prior(), config, maps=maps, generator=g)
    assert skipped.cg_scores == {} and skipped.cg_iters == 4


@pytest.mark.parametrize("bad", [{"cg_select": (0, 5)}, {"cg_select": (5,), "cg_select_nfe": 0}])
def test_cg_select_refuses_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError, match="cg_select"):
        ReconConfig(**bad)


def _disc(centre_x: float, radius: float = 5.0) -> torch.Tensor:
    """A smooth-edged disc object (y, x) on an empty background, centred at (12, centre_x)."""
    y, x = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    r = ((y - 12) ** 2 + (x - centre_x) ** 2).sqrt()
    return torch.sigmoid(2.0 * (radius - r)).to(C64)


def test_fov_edge_signal_tells_an_object_inside_the_fov_from_one_cut_by_it() -> None:
    from diffusion_core.reconstruct import fov_edge_sides, fov_edge_signal

    inside, cut = _disc(12.0), _disc(2.0, radius=7.0)  # the second reaches x = 0
    # phase encoding along x (axis 1): only the outer columns count
    assert fov_edge_signal(inside, 1) < 1e-3
    assert fov_edge_signal(cut, 1) > 0.1
    assert fov_edge_signal(cut.T, 0) == pytest.approx(fov_edge_signal(cut, 1))
    # along y the cut disc stays inside (rows 5..19)
    assert fov_edge_signal(cut, 0) < 1e-3
    low, high = fov_edge_sides(cut, 1)  # cut on the low side only
    assert low > 0.2 and high < 1e-3 and (low + high) / 2 == pytest.approx(fov_edge_signal(cut, 1))


@pytest.mark.parametrize(
    ("centre_x", "radius", "place", "cg"),
    [
        (12.0, 5.0, "inside the field of view", 7),
        (2.0, 7.0, "at the edge of the field of view", 3),  # reaches x = 0 only
        (12.0, 14.0, "cut by the field of view on both sides", 2),  # reaches x = 0 and x = 23
    ],
)
def test_cg_iters_follow_where_the_object_lies_for_line_masks(
    centre_x: float, radius: float, place: str, cg: int
) -> None:
    from diffusion_core.masks import poisson_disc_mask

    truth = _disc(centre_x, radius)
    maps = smooth_maps(4, SHAPE).to(C64)
    g = torch.Generator().manual_seed(0)
    kspace = fft2c(maps * truth) + 0.002 * random_complex((4, *SHAPE), g)
    config = ReconConfig(
        sampler="dds", nfe=4, num_samples=2, cg_iters=3, cg_iters_inside=7, cg_iters_cut=2
    )
    irregular = _mask(regular=False)
    lines = reconstruct(kspace * irregular, irregular, _prior(), config, maps=maps, generator=g)
    assert lines.cg_iters == cg
    assert f"line mask, the object {place} in the phase-encode direction" in lines.cg_note
    assert lines.cg_note.endswith(f"cg_iters {lines.cg_iters}")
    # lines on a regular grid (parallel imaging): no more data trust inside the FOV, and less
    # (cg_iters_cut) wherever the noise is above the limit
    grid = reconstruct(kspace * _mask(), _mask(), _prior(), config, maps=maps, generator=g)
    assert grid.cg_iters == (3 if cg == 7 else cg)
    assert ("the lines a regular grid (one in 3): no more data trust" in grid.cg_note) == (cg == 7)
    noisy_grid = replace(config, noise_sigma=0.02)
    loud = reconstruct(kspace * _mask(), _mask(), _prior(), noisy_grid, maps=maps, generator=g)
    assert loud.cg_iters == 2
    if cg != 2:
        assert "the lines a regular grid (one in 3) and the noise above the limit" in loud.cg_note
    # a 2D pattern keeps cg_iters; so does the rule switched off
    points = poisson_disc_mask(SHAPE, 2.0, 8, 0)
    flat = reconstruct(kspace * points, points, _prior(), config, maps=maps, generator=g)
    assert (flat.cg_iters, flat.cg_note) == (3, "")
    off = reconstruct(kspace * _mask(), _mask(), _prior(), FAST, maps=maps, generator=g)
    assert (off.cg_iters, off.cg_note) == (FAST.cg_iters, "")
    # noisy data are not given more data trust, however far inside the object lies; a noise
    # level that is given (measured by a noise scan) has the lower limit at R <= 4 (here R = 2)
    for sigma in (0.05, 0.02):
        noisy = replace(config, noise_sigma=sigma)
        loud = reconstruct(kspace * irregular, irregular, _prior(), noisy, maps=maps, generator=g)
        assert loud.cg_iters == min(cg, 3)
        assert f"noise {sigma:.3f} of it (limit 0.015)" in loud.cg_note
    quiet = replace(config, noise_sigma=0.01)
    low = reconstruct(kspace * irregular, irregular, _prior(), quiet, maps=maps, generator=g)
    assert low.cg_iters == cg


def test_inside_noise_limit_is_lower_only_for_measured_noise_at_r_up_to_4() -> None:
    from diffusion_core.reconstruct import inside_noise_limit

    assert [inside_noise_limit(True, r) for r in (1, 2, 4, 8, 16)] == [0.015] * 3 + [0.04] * 2
    # estimated from the k-space periphery (no noise scan): signal inflates it, the old limit
    assert [inside_noise_limit(False, r) for r in (2, 4, 8)] == [0.04] * 3


@pytest.mark.parametrize("name", ["cg_iters_inside", "cg_iters_cut"])
def test_cg_iters_rules_refuse_bad_values(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name}: expected >= 1 or None, got 0"):
        ReconConfig(**{name: 0})
