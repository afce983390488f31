"""Pieces every sampler shares: the typed step report, checked denoising, noise, the ancestral step."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion_core.data_consistency import DataConsistency
from diffusion_core.denoiser import Denoiser
from diffusion_core.noise import complex_noise
from diffusion_core.schedules import validate_sigmas


@dataclass(frozen=True)
class SamplerStep:
    """Reported after each step: ``step`` of ``total`` (1-based), the level just left, the state
    ``x`` after the step and the network's estimate ``denoised`` of the clean image."""

    step: int
    total: int
    sigma: float
    x: torch.Tensor
    denoised: torch.Tensor


Callback = Callable[[SamplerStep], None]


def sigma_list(sigmas: torch.Tensor) -> list[float]:
    """Validated schedule as Python floats (strictly decreasing, >= 0)."""
    validate_sigmas(torch.as_tensor(sigmas))
    return [float(s) for s in sigmas]


def denoise(denoiser: Denoiser, x: torch.Tensor, sigma: float, step: int) -> torch.Tensor:
    """``denoiser(x, sigma)``, stopping with an error naming the step if the output is not finite."""
    x0 = denoiser(x, sigma)
    if not bool(torch.isfinite(torch.view_as_real(x0)).all()):
        raise FloatingPointError(
            f"denoiser output at step {step} (sigma={sigma:.4g}) contains NaN/Inf; expected "
            "finite values (sampling stopped; non-finite or huge input samples cause this)"
        )
    return x0


def ancestral_step(
    x: torch.Tensor,
    x0: torch.Tensor,
    sigma: float,
    sigma_next: float,
    generator: torch.Generator | None,
    eta: float = 1.0,
) -> torch.Tensor:
    """DDIM / DDPM step from level sigma to sigma_next around the estimate x0 (Song, Meng, Ermon 2021,
    in the variance-exploding form): ``x0 + sqrt(s'^2 - c^2) eps + c z`` with eps = (x - x0)/sigma
    and c = eta * s' sqrt(1 - s'^2/s^2); eta = 1 is the ancestral (DDPM) step, eta = 0 deterministic."""
    if sigma_next == 0:
        return x0
    c = eta * sigma_next * math.sqrt(max(0.0, 1.0 - (sigma_next / sigma) ** 2))
    eps = (x - x0) / sigma
    out = x0 + math.sqrt(max(0.0, sigma_next**2 - c**2)) * eps
    return out + c * complex_noise(x, generator) if c > 0 else out


def langevin_increment(
    x: torch.Tensor, x0: torch.Tensor, sigma: float, snr: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, float]:
    """Unconditional Langevin increment ``eps * score + sqrt(2 eps) z`` at level sigma and its eps.

    score = (x0 - x) / sigma^2; eps = 2 (snr ||z|| / ||score||)^2 with the norms taken over the whole
    batch, as in the reference implementation (Song et al. 2021, Algorithm 5; score_sde).
    """
    z = complex_noise(x, generator)
    score = (x0 - x) / sigma**2
    eps = 2.0 * (snr * float(z.norm()) / max(float(score.norm()), 1e-30)) ** 2
    return eps * score + math.sqrt(2.0 * eps) * z, eps


def langevin_dc_step(
    x: torch.Tensor,
    x0: torch.Tensor,
    sigma: float,
    snr: float,
    dc: DataConsistency,
    generator: torch.Generator | None,
    y: torch.Tensor | None = None,
) -> torch.Tensor:
    """A Langevin corrector step on the posterior with data consistency (measurement y, default dc's).

    The Gaussian likelihood is integrated by the trapezoidal (Crank-Nicolson) rule, written with
    the proximal map as ``x' = 2 prox_w(x + increment / 2) - x``, w = ``dc.weight(eps / 2)``. This
    keeps the posterior variance exact along well-measured directions whatever eps (an implicit
    Euler step, ``prox`` after the step, would shrink it), and for noise-free data from a
    consistent x it equals the projection after the step.
    """
    inc, eps = langevin_increment(x, x0, sigma, snr, generator)
    return 2.0 * dc.prox(x + 0.5 * inc, dc.weight(eps / 2.0), y) - x
