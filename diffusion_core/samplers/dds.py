"""Decomposed diffusion sampler (DDS): fast DDIM steps with conjugate-gradient data consistency.

Chung, Lee, Ye 2024, "Decomposed diffusion sampler for accelerating large-scale inverse problems",
ICLR 2024 (Algorithm 1). Each step denoises (Tweedie estimate x0_hat = D(x_t, sigma)), moves x0_hat
towards the data by a few CG iterations on argmin_z ||z - x0_hat||^2 / 2 + w / 2 ||A z - y||^2
(``dc.prox``; w = ``dc.weight(dc_scale * c_out^2)`` with c_out^2 = sigma^2 sigma_data^2 / (sigma^2 +
sigma_data^2), the error variance of the best linear denoiser: x0_hat is trusted to that), and
re-noises with the DDIM rule (eta) to the next level. One network evaluation per step; the result
is the final data-consistent estimate. An approximation, not an exact posterior sampler.

One deliberate difference from the paper: the noise direction of the DDIM step is re-estimated
around the corrected estimate, eps = (x_t - x0_dc) / sigma, instead of the network's
eps = (x_t - x0_hat) / sigma. That makes the step the DDIM step of the data-conditioned score, so
the data term does not accumulate over steps: on the Gaussian test problem (noisy data) the paper's
form got worse with more steps (relative error 0.51, 0.53, 0.64 at 10, 20, 50 NFE, zero-filled
0.64) while this form stays at the exact posterior mean's error (0.50, 0.49, 0.49; posterior mean
0.499) and its sample variance approaches the posterior's (56 %, 75 %, 92 %). For noise-free data
both forms project onto the data at every step.
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


def sample_dds(
    x: torch.Tensor,
    sigmas: torch.Tensor,
    denoiser: Denoiser,
    dc: DataConsistency,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    *,
    eta: float = 0.8,
    dc_scale: float = 1.0,
    sigma_data: float = 0.5,
) -> torch.Tensor:
    """Sample from x = x_T at sigmas[0]; NFE = len(sigmas) - 1."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta: expected in [0, 1], got {eta}")
    if dc_scale <= 0:
        raise ValueError(f"dc_scale: expected > 0, got {dc_scale}")
    levels = sigma_list(sigmas)
    total = len(levels) - 1
    for i, (sigma, sigma_next) in enumerate(itertools.pairwise(levels)):
        x0 = denoise(denoiser, x, sigma, i + 1)
        # x0_hat is trusted to its expected error, that of the best linear denoiser (EDM's c_out^2)
        trust = dc_scale * sigma**2 * sigma_data**2 / (sigma**2 + sigma_data**2)
        x0_dc = dc.prox(x0, dc.weight(trust))
        # DDIM around the corrected estimate, eps = (x - x0_dc) / sigma (see the module docstring)
        x = ancestral_step(x, x0_dc, sigma, sigma_next, generator, eta=eta)
        if callback is not None:
            callback(SamplerStep(i + 1, total, sigma, x, x0_dc))
    return x
