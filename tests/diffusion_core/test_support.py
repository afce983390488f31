"""The support: samplers reconstruct only where a coil sees the object, and are exact there.

Outside the support the data carry no information, so the exact posterior there is the prior's;
the product returns zero there by design (the constraint x = 0 outside is part of the forward
model). Inside, the exact samplers must match the closed-form posterior given that constraint
(gaussian_problem.restricted_posterior), tested as in test_samplers_gaussian.py: the sample mean's
Mahalanobis distance against chi2(2n) and each pixel's variance against chi2(2(K - 1)).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bart_io import BRAIN
from gaussian_problem import (
    GaussianProblem,
    RestrictedPosterior,
    make_problem,
    restricted_posterior,
)
from scipy.ndimage import binary_dilation
from scipy.stats import chi2

from diffusion_core import schedules
from diffusion_core.classical import zero_filled
from diffusion_core.data_consistency import SenseDataConsistency
from diffusion_core.denoiser import GaussianDenoiser
from diffusion_core.masks import random_columns_mask
from diffusion_core.noise import complex_noise
from diffusion_core.reconstruct import ReconConfig, reconstruct
from diffusion_core.samplers import sample_dds, sample_dps, sample_score_mri, sample_song2022

K = 256
ALPHA = 1e-3
C64 = torch.complex64


def _support(shape: tuple[int, int]) -> torch.Tensor:
    """An off-centre ellipse covering about half of the image."""
    h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return ((yy - 0.1) / 0.75) ** 2 + ((xx + 0.15) / 0.65) ** 2 < 1


def _prior64(p: GaussianProblem) -> GaussianDenoiser:
    return GaussianDenoiser(p.prior.mean.to(C64), p.prior.variance.float(), p.prior.fourier)


def _dc(p: GaussianProblem, support: torch.Tensor) -> SenseDataConsistency:
    return SenseDataConsistency(
        p.maps.to(C64), p.mask.float(), p.kspace.to(C64), p.noise_sigma, 5, support
    )


def _start(p: GaussianProblem, seed: int, k: int = K) -> tuple[torch.Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(seed)
    return p.prior.mean.to(C64) + 20.0 * complex_noise(
        torch.zeros(k, *p.truth.shape, dtype=C64), g
    ), g


def assert_restricted_posterior(post: RestrictedPosterior, samples: torch.Tensor) -> None:
    xs = samples.to(torch.complex128)
    assert float(xs[:, ~post.support].abs().max()) == 0.0  # zero outside, exactly
    inside = xs[:, post.support]  # (K, n) in row-major order, as post.cov
    k, n = inside.shape
    chol = torch.linalg.cholesky(post.cov)
    d = (inside.mean(0) - post.mean[post.support]).reshape(-1, 1)
    maha = 2 * k * float(torch.linalg.solve_triangular(chol, d, upper=False).abs().pow(2).sum())
    assert maha < chi2.ppf(1 - ALPHA, 2 * n), (maha, 2 * n)
    stat = 2 * (k - 1) * inside.var(0) / post.cov.diagonal().real
    lo, hi = chi2.ppf(ALPHA / n / 2, 2 * (k - 1)), chi2.ppf(1 - ALPHA / n / 2, 2 * (k - 1))
    assert lo < float(stat.min()) and float(stat.max()) < hi, (float(stat.min()), float(stat.max()))


@pytest.fixture(scope="module", params=["diagonal", "circulant"])
def problem(request: pytest.FixtureRequest) -> GaussianProblem:
    return make_problem(request.param, noise_sigma=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", [sample_score_mri, sample_song2022], ids=["score_mri", "song"])
def test_exact_samplers_sample_the_restricted_posterior(sampler, problem: GaussianProblem) -> None:
    support = _support(tuple(problem.truth.shape))
    post = restricted_posterior(problem, support)
    # the constraint matters: the restricted mean differs from the unrestricted one inside
    gap = (post.mean - problem.post_mean)[support].abs().max()
    assert float(gap) > 0.05 or problem.prior.fourier is False
    x, g = _start(problem, seed=11)
    sigmas = schedules.ve_geometric(150, 0.005, 20.0)
    assert_restricted_posterior(
        post, sampler(x, sigmas, _prior64(problem), _dc(problem, support), g)
    )


@pytest.mark.parametrize("sampler", [sample_dds, sample_dps], ids=["dds", "dps"])
def test_approximate_samplers_are_zero_outside_and_close_inside(sampler, problem) -> None:
    support = _support(tuple(problem.truth.shape))
    post = restricted_posterior(problem, support)
    x, g = _start(problem, seed=12, k=32)
    kwargs = {"zeta": 1.0} if sampler is sample_dps else {}
    xs = sampler(
        x, schedules.karras(50, 0.005, 20.0), _prior64(problem), _dc(problem, support), g, **kwargs
    )
    assert float(xs[:, ~support].abs().max()) == 0.0
    # inside, nearer the restricted posterior mean than zero-filling is (measured: DDS 0.3-0.5 of
    # zero-filling's distance, DPS 0.7)
    err = float((xs.mean(0).to(torch.complex128) - post.mean)[support].norm())
    zf = zero_filled(problem.kspace, problem.mask, problem.maps)
    assert err < 0.85 * float((zf - post.mean)[support].norm()), err


def test_dc_rejects_bad_supports() -> None:
    p = make_problem("diagonal")
    with pytest.raises(ValueError, match=r"support: is empty"):
        _dc(p, torch.zeros(p.truth.shape, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"support: expected a \(y, x\) = \(16, 16\)"):
        _dc(p, torch.ones(15, 16, dtype=torch.bool))
    blind = p.maps.clone()
    blind[:, :8] = 0  # no coil sees the top half
    top = torch.zeros(p.truth.shape, dtype=torch.bool)
    top[:8] = True
    with pytest.raises(ValueError, match="support: no coil sees any of its pixels"):
        SenseDataConsistency(blind.to(C64), p.mask.float(), p.kspace.to(C64), 0.1, 5, top)


def _bright_prior(shape: tuple[int, int]) -> GaussianDenoiser:
    """A prior that imagines tissue everywhere: mean 0.5 (the brain's 99th percentile is 1 in the
    prior's scale), smooth stationary texture."""
    h, w = shape
    ky, kx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    spec = 1.0 / (1.0 + (ky**2 + kx**2).float() / 16.0)
    return GaussianDenoiser.circulant(
        torch.full(shape, 0.5, dtype=C64), spec * (h * w) / spec.sum() * 0.05
    )


@pytest.mark.slow
def test_background_of_the_real_brain_stays_empty() -> None:
    full = torch.from_numpy(np.load(BRAIN))
    shape = (full.shape[-2], full.shape[-1])
    mask = random_columns_mask(shape, 4.0, 20, seed=0)
    cfg = ReconConfig(sampler="dds", nfe=10, num_samples=2, cg_iters=5)
    r = reconstruct(
        full * mask, mask, _bright_prior(shape), cfg, generator=torch.Generator().manual_seed(0)
    )
    reference = zero_filled(full, torch.ones(shape), r.maps)
    head = reference.abs() > 0.1 * reference.abs().quantile(0.99)
    background = ~torch.from_numpy(binary_dilation(head.numpy(), iterations=10))
    assert float(background.float().mean()) > 0.05  # there is an object-free region to check
    outside = background & ~r.support
    assert int(outside.sum()) > 0.5 * int(background.sum())  # most of it is outside the support
    level = float(reference.abs()[head].mean())
    for image in (r.mean, r.std, *r.samples):
        assert float(image.abs()[~r.support].max()) == 0.0
    # where the coils see the background, the data keep it dim despite the prior's 0.5 (measured:
    # 0.105 of the head's mean level at 10 NFE)
    seen_background = background & r.support
    assert float(r.mean.abs()[seen_background].mean()) < 0.15 * level
    assert float(r.mean.abs()[background].mean()) < 0.05 * level
