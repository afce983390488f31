"""Score-MRI: predictor-corrector sampling with data consistency after every step.

Chung & Ye 2022, "Score-based diffusion models for accelerated MRI", Medical Image Analysis 80,
102479 (Algorithms 1-3). Predictor: a reverse-diffusion step of the VE SDE from sigma_i to
sigma_{i+1} (here in its ancestral form), followed by the data-consistency step ``dc.prox`` with the
weight matched to the step (``dc.weight``): the k-space projection of the paper for noise-free
data, the implicit likelihood step for noisy data. Corrector: ``corrector_steps`` Langevin steps at
sigma_{i+1} (step size by the snr rule) with the likelihood integrated by the Crank-Nicolson rule
(:func:`~diffusion_core.samplers.common.langevin_dc_step`), so that the corrector is a Langevin chain
on the posterior at that level whose law tends to the posterior as sigma and the steps shrink. With
a SENSE ``dc`` this is the SENSE-combined form; with a per-coil ``dc`` on coil images (B, c, H, W)
it is the per-coil form, combined by SSOS afterwards (:mod:`diffusion_core.reconstruct`).
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
    langevin_dc_step,
    sigma_list,
)


def sample_score_mri(
    x: torch.Tensor,
    sigmas: torch.Tensor,
    denoiser: Denoiser,
    dc: DataConsistency,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    *,
    corrector_steps: int = 1,
    snr: float = 0.16,
) -> torch.Tensor:
    """Sample from x = x_T (noise at sigmas[0]); NFE = (len(sigmas) - 1) * (1 + corrector_steps),
    less the correctors at a final level 0. Returns the sample at sigmas[-1]."""
    levels = sigma_list(sigmas)
    total = len(levels) - 1
    for i, (sigma, sigma_next) in enumerate(itertools.pairwise(levels)):
        x0 = denoise(denoiser, x, sigma, i + 1)
        x = ancestral_step(x, x0, sigma, sigma_next, generator)
        x = dc.prox(x, dc.weight(sigma**2 - sigma_next**2))
        for _ in range(corrector_steps if sigma_next > 0 else 0):
            d = denoise(denoiser, x, sigma_next, i + 1)
            x = langevin_dc_step(x, d, sigma_next, snr, dc, generator)
        if callback is not None:
            callback(SamplerStep(i + 1, total, sigma, x, x0))
    return x
