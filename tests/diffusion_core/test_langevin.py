"""The preconditioned annealed Langevin reference sampler against the closed-form Gaussian posterior.

Same tolerances as ``test_samplers_gaussian.py`` (chi-square on the mean, per-pixel variance with a
Bonferroni bound), same problems (diagonal and circulant priors, noisy SENSE data), K = 256.
"""

from __future__ import annotations

import pytest
import torch
from gaussian_problem import GaussianProblem, make_problem
from test_samplers_gaussian import _dc, _prior64, _start, assert_posterior

from diffusion_core import schedules
from diffusion_core.data_consistency import SenseDataConsistency
from diffusion_core.fft import fft2c
from diffusion_core.noise import complex_noise
from diffusion_core.reconstruct import ReconConfig
from diffusion_core.samplers import sample_langevin

C64 = torch.complex64


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["diagonal", "circulant"])
def test_langevin_samples_the_posterior(kind: str) -> None:
    problem: GaussianProblem = make_problem(kind, noise_sigma=0.1)
    x, g = _start(problem, 20.0, seed=1)
    sigmas = schedules.ve_geometric(100, 0.005, 20.0)
    xs = sample_langevin(x, sigmas, _prior64(problem), _dc(problem), g, steps_per_level=2)
    assert_posterior(problem, xs)


def test_noise_free_data_are_kept_exactly() -> None:
    p = make_problem("diagonal", noise_sigma=0.1)
    y = (fft2c(p.maps * p.truth) * p.mask).to(C64)
    dc = SenseDataConsistency(p.maps.to(C64), p.mask.float(), y, 0.0, cg_iters=20)
    g = torch.Generator().manual_seed(2)
    x = 20.0 * complex_noise(torch.zeros(4, *p.truth.shape, dtype=C64), g)
    xs = sample_langevin(x, schedules.ve_geometric(12, 0.005, 20.0), _prior64(p), dc, g)
    assert float(dc.residual_norm(xs).max() / y.norm()) < 1e-3


def test_seeds_and_bad_settings() -> None:
    p = make_problem("diagonal", noise_sigma=0.1)
    sig = schedules.karras(6, 0.01, 20.0)
    runs = []
    for seed in (3, 3, 4):
        x, g = _start(p, 20.0, seed=seed, k=2)
        runs.append(sample_langevin(x, sig, _prior64(p), _dc(p), g))
    assert torch.equal(runs[0], runs[1])
    assert float((runs[0] - runs[2]).abs().min()) > 0
    x, g = _start(p, 20.0, seed=0, k=1)
    with pytest.raises(ValueError, match="step_size"):
        sample_langevin(x, sig, _prior64(p), _dc(p), g, step_size=1.5)
    assert ReconConfig(sampler="langevin").steps == ReconConfig().steps
