"""Preconditioned annealed Langevin sampling with the exact likelihood: a posterior-correct reference.

After Blumenthal, Holliber, Tamir, Uecker, arXiv 2512.05791 (the sampler of BART 1.0's
``bart sample``): at every noise level sigma the chain targets p_sigma(x) p(y | x), the diffused
prior times the exact (not annealed) likelihood, with unadjusted Langevin steps preconditioned by
M = (I / sigma^2 + A^H A / s^2)^-1 (s: the measurement noise per real channel), which takes long
steps where the data say little and short ones where they constrain the image. Written with the
data consistency's proximal map P v = prox(v, w) at w = ``dc.weight(sigma^2)``:

* drift: M grad log p = prox(D(x, sigma), w) - x (D: the denoiser, score (D - x) / sigma^2);
* noise: sigma P (z1 + sqrt(w) A^H z2) has covariance M (z1 white in images, z2 in k-space),
  the perturb-then-solve draw, so no square root of M is needed;

and both go through one CG solve per step (``dc.prox`` is linear in v and y):
x' = (1 - tau) x + prox(tau D + sqrt(2 tau) sigma z1, w, tau y + sqrt(2 tau / w) sigma z2).
For noise-free data (w = inf) the noise is projected onto the null space of A and y is kept.
Exact in the limit of small steps and slow annealing; not fast (one network evaluation and one
CG solve per step), which is what a reference may cost.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from diffusion_core.data_consistency import DataConsistency
from diffusion_core.denoiser import Denoiser
from diffusion_core.noise import complex_noise
from diffusion_core.samplers.common import Callback, SamplerStep, denoise, sigma_list


class MeasuredDataConsistency(DataConsistency, Protocol):
    """A data consistency that also exposes its measurement ``y`` (in the order ``prox`` takes)."""

    y: torch.Tensor


def sample_langevin(
    x: torch.Tensor,
    sigmas: torch.Tensor,
    denoiser: Denoiser,
    dc: MeasuredDataConsistency,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    *,
    steps_per_level: int = 1,
    step_size: float = 0.5,
) -> torch.Tensor:
    """Sample from x = x_T at sigmas[0]: ``steps_per_level`` preconditioned Langevin steps of size
    ``step_size`` (tau, in (0, 1]) at every positive level; NFE = (len(sigmas) - 1) * steps_per_level."""
    if not 0.0 < step_size <= 1.0:
        raise ValueError(f"step_size: expected in (0, 1], got {step_size}")
    if steps_per_level < 1:
        raise ValueError(f"steps_per_level: expected >= 1, got {steps_per_level}")
    levels = [s for s in sigma_list(sigmas) if s > 0]
    total, tau = len(levels), step_size
    measured = dc.y.expand(x.shape[0], *dc.y.shape)  # one k-space per batch item
    if levels and math.isinf(dc.weight(levels[0] ** 2)):
        x = dc.prox(x, math.inf)  # noise-free data: start on {A x = y}; every step stays there
    for i, sigma in enumerate(levels):
        w = dc.weight(sigma**2)
        for _ in range(steps_per_level):
            x0 = denoise(denoiser, x, sigma, i + 1)
            z1 = complex_noise(x, generator)
            v = tau * x0 + math.sqrt(2.0 * tau) * sigma * z1
            if math.isinf(w):
                # the projection onto {A z = tau y} keeps only the noise in the null space of A
                x = (1.0 - tau) * x + dc.prox(v, w, tau * dc.y)
            else:
                z2 = complex_noise(measured, generator)
                y = tau * dc.y + math.sqrt(2.0 * tau / w) * sigma * z2
                x = (1.0 - tau) * x + dc.prox(v, w, y)
        if callback is not None:
            callback(SamplerStep(i + 1, total, sigma, x, x0))
    return x
