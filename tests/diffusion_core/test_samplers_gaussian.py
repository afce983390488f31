"""Samplers against the closed-form posterior of a Gaussian prior (no trained weights).

Exact in the limit of small steps: score-MRI (Chung & Ye 2022) and Song et al. 2022, whose
corrector is a (Crank-Nicolson) proximal Langevin chain on the posterior; they are tested on the
posterior's mean and per-pixel variance. Approximations: DPS and DDS; they are tested on what they
promise (consistency with the data, error below zero-filled and CG-SENSE).

Tolerances (K samples, n pixels, posterior CN(m, C), not tuned to pass):
* mean: for exact samples 2K (xbar - m)^H C^-1 (xbar - m) ~ chi2(2n); accept below its 1 - 1e-3 quantile.
* variance: per pixel, 2 (K - 1) s_j^2 / C_jj ~ chi2(2 (K - 1)); accept inside the two-sided quantiles
  at 1e-3 / n (Bonferroni over pixels).
"""

from __future__ import annotations

import pytest
import torch
from gaussian_problem import GaussianProblem, make_problem
from scipy.stats import chi2

from diffusion_core import schedules
from diffusion_core.classical import cg_sense, zero_filled
from diffusion_core.data_consistency import CoilDataConsistency, SenseDataConsistency
from diffusion_core.denoiser import GaussianDenoiser
from diffusion_core.fft import fft2c
from diffusion_core.noise import complex_noise
from diffusion_core.samplers import sample_dds, sample_dps, sample_score_mri, sample_song2022

K = 256
ALPHA = 1e-3
C64 = torch.complex64


def _prior64(p: GaussianProblem) -> GaussianDenoiser:
    return GaussianDenoiser(p.prior.mean.to(C64), p.prior.variance.float(), p.prior.fourier)


def _dc(p: GaussianProblem, cg_iters: int = 5) -> SenseDataConsistency:
    return SenseDataConsistency(
        p.maps.to(C64), p.mask.float(), p.kspace.to(C64), p.noise_sigma, cg_iters
    )


def _start(
    p: GaussianProblem, sigma_max: float, seed: int, k: int = K
) -> tuple[torch.Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(seed)
    x = p.prior.mean.to(C64) + sigma_max * complex_noise(
        torch.zeros(k, *p.truth.shape, dtype=C64), g
    )
    return x, g


def assert_posterior(p: GaussianProblem, samples: torch.Tensor) -> None:
    xs = samples.to(torch.complex128)
    k, n = xs.shape[0], p.truth.numel()
    chol = torch.linalg.cholesky(p.post_cov)
    d = (xs.mean(0) - p.post_mean).reshape(-1, 1)
    maha = 2 * k * float(torch.linalg.solve_triangular(chol, d, upper=False).abs().pow(2).sum())
    assert maha < chi2.ppf(1 - ALPHA, 2 * n), (maha, 2 * n)
    stat = 2 * (k - 1) * xs.var(0) / p.post_var
    lo, hi = chi2.ppf(ALPHA / n / 2, 2 * (k - 1)), chi2.ppf(1 - ALPHA / n / 2, 2 * (k - 1))
    assert float(stat.min()) > lo and float(stat.max()) < hi, (
        float(stat.min()),
        float(stat.max()),
        lo,
        hi,
    )


@pytest.fixture(scope="module", params=["diagonal", "circulant"])
def problem(request: pytest.FixtureRequest) -> GaussianProblem:
    return make_problem(request.param, noise_sigma=0.1)


def test_score_mri_sense_samples_the_posterior(problem: GaussianProblem) -> None:
    sigmas = schedules.ve_geometric(150, 0.005, 20.0)
    x, g = _start(problem, 20.0, seed=1)
    assert_posterior(problem, sample_score_mri(x, sigmas, _prior64(problem), _dc(problem), g))


def test_song2022_samples_the_posterior(problem: GaussianProblem) -> None:
    sigmas = schedules.ve_geometric(150, 0.005, 20.0)
    x, g = _start(problem, 20.0, seed=2)
    assert_posterior(problem, sample_song2022(x, sigmas, _prior64(problem), _dc(problem), g))


def test_score_mri_per_coil_samples_each_coil_posterior() -> None:
    """Per-coil form: every coil image has the circulant prior and its own Cartesian data, so the
    exact posterior is diagonal in k-space: measured  CN((y/(2 s^2) + mu/p) / (1/(2 s^2) + 1/p), .)."""
    p = make_problem("circulant", noise_sigma=0.1)
    coils, (h, w) = 3, p.truth.shape
    g = torch.Generator().manual_seed(3)
    truth = p.prior.sample((coils,), g)
    noise = complex_noise(torch.zeros(coils, h, w, dtype=torch.complex128), g)
    kspace = (fft2c(truth) + p.noise_sigma * noise) * p.mask
    dc = CoilDataConsistency(p.mask.float(), kspace.to(C64), p.noise_sigma)
    x = p.prior.mean.to(C64) + 20.0 * complex_noise(torch.zeros(K, coils, h, w, dtype=C64), g)
    xs = sample_score_mri(x, schedules.ve_geometric(100, 0.005, 20.0), _prior64(p), dc, g)
    spec, mu_k, s2 = p.prior.variance, fft2c(p.prior.mean), 2 * p.noise_sigma**2
    post_var = torch.where(p.mask > 0, 1 / (1 / spec + 1 / s2), spec)
    post_mean = torch.where(p.mask > 0, post_var * (kspace / s2 + mu_k / spec), mu_k)
    ks = fft2c(xs.to(torch.complex128))
    z2 = 2 * K * (ks.mean(0) - post_mean).abs().pow(2) / post_var
    assert float(z2.sum()) < chi2.ppf(1 - ALPHA, 2 * z2.numel())
    stat = 2 * (K - 1) * ks.var(0) / post_var
    m = stat.numel()
    assert float(stat.min()) > chi2.ppf(ALPHA / m / 2, 2 * (K - 1))
    assert float(stat.max()) < chi2.ppf(1 - ALPHA / m / 2, 2 * (K - 1))


def _baseline_errors(p: GaussianProblem) -> tuple[float, float]:
    def err(im: torch.Tensor) -> float:
        return float((im - p.truth).norm() / p.truth.norm())

    return err(zero_filled(p.kspace, p.mask, p.maps)), err(cg_sense(p.kspace, p.mask, p.maps))


@pytest.mark.parametrize(
    ("sampler", "sigmas", "kwargs"),
    [
        (sample_dps, schedules.karras(100, 0.005, 20.0), {"zeta": 1.0}),
        (sample_dds, schedules.karras(50, 0.005, 20.0), {}),
    ],
    ids=["dps", "dds"],
)
def test_approximate_samplers_keep_their_promises(
    sampler, sigmas, kwargs, problem: GaussianProblem
) -> None:
    k = 64
    x, g = _start(problem, 20.0, seed=4, k=k)
    dc = _dc(problem)
    xs = sampler(x, sigmas, _prior64(problem), dc, g, **kwargs).to(torch.complex128)
    mean = xs.mean(0)
    # consistent with the data: residual of each sample within 1.5x the expected noise norm
    noise_norm = (2 * problem.noise_sigma**2 * problem.mask.sum() * problem.maps.shape[0]) ** 0.5
    assert float(dc.residual_norm(xs.to(C64)).max()) < 1.5 * float(noise_norm)
    # better than the classical baselines on this problem
    zf, cg = _baseline_errors(problem)
    err = float((mean - problem.truth).norm() / problem.truth.norm())
    assert err < min(zf, cg), (err, zf, cg)


def test_noise_free_hard_dc_reproduces_sampled_kspace() -> None:
    p = make_problem("diagonal", noise_sigma=0.1)
    g = torch.Generator().manual_seed(5)
    kspace = (fft2c(p.truth.expand(3, -1, -1)) * p.mask).to(C64)
    dc = CoilDataConsistency(p.mask.float(), kspace, 0.0)
    x = 20.0 * complex_noise(torch.zeros(4, 3, *p.truth.shape, dtype=C64), g)
    xs = sample_score_mri(x, schedules.ve_geometric(20, 0.005, 20.0), _prior64(p), dc, g)
    err = ((fft2c(xs) - kspace) * p.mask).abs().max() / kspace.abs().max()
    assert float(err) < 1e-6
    # the SENSE form projects by CG in k-space: consistent to the CG tolerance
    y = (fft2c(p.maps * p.truth) * p.mask).to(C64)
    dc2 = SenseDataConsistency(p.maps.to(C64), p.mask.float(), y, 0.0, cg_iters=30)
    x2 = 20.0 * complex_noise(torch.zeros(4, *p.truth.shape, dtype=C64), g)
    xs2 = sample_score_mri(x2, schedules.ve_geometric(20, 0.005, 20.0), _prior64(p), dc2, g)
    assert float(dc2.residual_norm(xs2).max() / y.norm()) < 1e-4


@pytest.mark.parametrize("sampler", [sample_score_mri, sample_song2022, sample_dps, sample_dds])
def test_seeds(sampler) -> None:
    p = make_problem("diagonal", noise_sigma=0.1)
    sig = schedules.karras(8, 0.01, 20.0)
    runs = []
    for seed in (7, 7, 8):
        x, g = _start(p, 20.0, seed=seed, k=2)
        runs.append(sampler(x, sig, _prior64(p), _dc(p), g))
    assert torch.equal(runs[0], runs[1])
    assert float((runs[0] - runs[2]).abs().min()) > 0


class _Nan:
    def __init__(self, prior: GaussianDenoiser, bad_call: int) -> None:
        self.prior, self.calls, self.bad_call = prior, 0, bad_call

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        self.calls += 1
        out = self.prior(x, sigma)
        return out * float("nan") if self.calls == self.bad_call else out


@pytest.mark.parametrize(
    ("sampler", "step"),
    # one evaluation per step for DDS and DPS; predictor + corrector per step for the PC samplers
    [(sample_dds, 5), (sample_dps, 5), (sample_score_mri, 3), (sample_song2022, 3)],
)
def test_nan_denoiser_stops_naming_the_step(sampler, step: int) -> None:
    p = make_problem("diagonal")
    x, g = _start(p, 20.0, seed=0, k=1)
    nan = _Nan(_prior64(p), bad_call=5)
    with pytest.raises(FloatingPointError, match=f"at step {step} "):
        sampler(x, schedules.karras(8, 0.01, 20.0), nan, _dc(p), g)


def test_increasing_schedule_rejected() -> None:
    p = make_problem("diagonal")
    x, g = _start(p, 20.0, seed=0, k=1)
    with pytest.raises(ValueError, match="strictly decrease"):
        sample_dds(x, torch.tensor([1.0, 2.0, 0.0]), _prior64(p), _dc(p), g)
