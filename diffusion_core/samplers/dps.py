"""Diffusion posterior sampling (DPS).

Chung, Kim, McCann, Klasky, Ye 2023, "Diffusion posterior sampling for general noisy inverse
problems", ICLR 2023 (Algorithm 1). Each step is an unconditional ancestral step followed by
x <- x - zeta * grad_x ||y - A D(x, sigma)||, the gradient taken through the denoiser by autograd
(the paper's zeta_i = zeta' / ||y - A x0_hat|| applied to the squared norm is the same step).
An approximation: the likelihood p(y | x_t) is replaced by p(y | E[x0 | x_t]), so the samples are
not exact posterior samples even with many steps.

The exact part of the measurement, x = 0 outside the support (``dc.restrict``), cannot be a
gradient step: the clean estimate and the gradient are restricted to the support instead, so the
state there is pure noise that the last step removes, as in the samplers that use ``dc.prox``.
"""

from __future__ import annotations

import itertools

import torch

from diffusion_core.data_consistency import DataConsistency
from diffusion_core.denoiser import Denoiser
from diffusion_core.samplers.common import (
    Callback,
    SamplerStep,
    ancestral_step,
    denoise,
    sigma_list,
)


def sample_dps(
    x: torch.Tensor,
    sigmas: torch.Tensor,
    denoiser: Denoiser,
    dc: DataConsistency,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    *,
    zeta: float = 1.0,
) -> torch.Tensor:
    """Sample from x = x_T at sigmas[0]; NFE = len(sigmas) - 1 (each with a backward pass)."""
    if zeta < 0:
        raise ValueError(f"zeta: expected >= 0, got {zeta}")
    levels = sigma_list(sigmas)
    total = len(levels) - 1
    for i, (sigma, sigma_next) in enumerate(itertools.pairwise(levels)):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = denoise(denoiser, xg, sigma, i + 1)
            (grad,) = torch.autograd.grad(dc.residual_norm(x0).sum(), xg)
        x0 = dc.restrict(x0.detach())
        x = ancestral_step(x, x0, sigma, sigma_next, generator) - zeta * dc.restrict(grad)
        if callback is not None:
            callback(SamplerStep(i + 1, total, sigma, x, x0))
    return x
