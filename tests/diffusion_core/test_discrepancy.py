"""The discrepancy-principle weight: the residual it leaves is the noise energy asked for."""

from __future__ import annotations

import math

import pytest
import torch
from gaussian_problem import make_problem

from diffusion_core.data_consistency import SenseDataConsistency
from diffusion_core.discrepancy import discrepancy_prox


def _dc(noise_sigma: float = 0.1) -> tuple[SenseDataConsistency, torch.Tensor]:
    p = make_problem("diagonal", noise_sigma=noise_sigma, seed=3)
    dc = SenseDataConsistency(p.maps, p.mask, p.kspace, noise_sigma, cg_iters=80)
    return dc, p.truth


def test_noise_energy_is_the_true_images_residual() -> None:
    # y = A x + n: ||A x - y||^2 = ||n||^2, whose mean is 2 sigma^2 m (m = 4 coils x 8 columns x 16 rows);
    # its relative std is 1 / sqrt(m) = 4.4 %, so 15 % is a 3.4-sigma bound
    dc, truth = _dc()
    assert dc.noise_energy() == pytest.approx(2 * 0.1**2 * 4 * 8 * 16)
    residual = float(dc.residual_norm(truth[None])[0]) ** 2
    assert residual == pytest.approx(dc.noise_energy(), rel=0.15)


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_residual_matches_the_target(tau: float) -> None:
    dc, truth = _dc()
    v = torch.zeros((2, *truth.shape), dtype=truth.dtype)
    v[1] = -0.5 * truth  # a different starting estimate gets its own weight
    z, w = discrepancy_prox(dc, v, tau, bisections=30)
    residual = dc.residual_norm(z) ** 2
    assert residual.tolist() == pytest.approx([tau * dc.noise_energy()] * 2, rel=0.01)
    assert float(w[0]) != pytest.approx(float(w[1]), rel=0.05)


def test_more_residual_allowed_means_a_smaller_weight() -> None:
    dc, truth = _dc()
    v = torch.zeros((1, *truth.shape), dtype=truth.dtype)
    weights = [float(discrepancy_prox(dc, v, tau)[1][0]) for tau in (0.5, 1.0, 2.0)]
    assert weights[0] > weights[1] > weights[2]


def test_an_estimate_within_the_target_is_kept() -> None:
    dc, truth = _dc()
    z, w = discrepancy_prox(dc, truth[None], tau=2.0)  # residual = ||n||^2, about half of 2x
    assert float(w[0]) == 0.0
    assert torch.equal(z[0], truth)


def test_noise_free_data_are_projected() -> None:
    dc, truth = _dc(noise_sigma=0.0)
    z, w = discrepancy_prox(dc, torch.zeros((1, *truth.shape), dtype=truth.dtype))
    assert math.isinf(float(w[0]))
    assert float(dc.residual_norm(z)[0]) < 1e-6 * float(dc.y.abs().pow(2).sum().sqrt())
    with pytest.raises(ValueError, match="tau"):
        discrepancy_prox(dc, z, tau=0.0)
