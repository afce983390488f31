"""Noise schedules: decreasing, correct end points, and the closed forms they claim."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_core import schedules


@pytest.mark.parametrize(
    "sigmas",
    [
        schedules.ve_geometric(10),
        schedules.vp_linear(10),
        schedules.vp_cosine(10),
        schedules.karras(10),
    ],
    ids=["ve", "vp_linear", "vp_cosine", "karras"],
)
def test_strictly_decreasing_and_ends_at_zero(sigmas: torch.Tensor) -> None:
    assert sigmas.ndim == 1 and sigmas.numel() == 11
    assert float(sigmas[-1]) == 0.0 and float(sigmas[-2]) > 0
    assert bool((sigmas[1:] < sigmas[:-1]).all())


def test_ve_geometric_ratio_and_ends() -> None:
    s = schedules.ve_geometric(5, sigma_min=0.01, sigma_max=100.0)[:-1]
    torch.testing.assert_close(s, torch.tensor([100.0, 10.0, 1.0, 0.1, 0.01], dtype=torch.float64))


def test_karras_endpoints_and_rho_one_is_linear() -> None:
    s = schedules.karras(5, 0.5, 2.5, rho=1.0)[:-1]
    torch.testing.assert_close(s, torch.tensor([2.5, 2.0, 1.5, 1.0, 0.5], dtype=torch.float64))
    s7 = schedules.karras(18, 0.002, 80.0)
    assert math.isclose(float(s7[0]), 80.0) and math.isclose(float(s7[-2]), 0.002, rel_tol=1e-9)


def test_vp_linear_matches_alpha_bar() -> None:
    # sigma = sqrt(1/alpha_bar - 1) with alpha_bar(t) = exp(-(beta_min t + (beta_max - beta_min) t^2 / 2))
    s = schedules.vp_linear(3, beta_min=0.1, beta_max=20.0, t_min=0.5)
    ab = math.exp(-(0.1 * 0.5 + 0.5 * 19.9 * 0.25))
    assert math.isclose(float(s[-2]), math.sqrt(1 / ab - 1), rel_tol=1e-9)


def test_vp_cosine_small_t_is_small_sigma() -> None:
    s = schedules.vp_cosine(50)
    assert float(s[-2]) < 0.01 and float(s[0]) <= 80.0


@pytest.mark.parametrize(
    "bad",
    [
        torch.tensor([1.0, 1.0, 0.0]),
        torch.tensor([1.0, 2.0]),
        torch.tensor([1.0, -0.5]),
        torch.tensor([float("nan"), 0.0]),
    ],
)
def test_validate_rejects(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="sigmas"):
        schedules.validate_sigmas(bad)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="sigma_min"):
        schedules.karras(10, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="n"):
        schedules.ve_geometric(0)
