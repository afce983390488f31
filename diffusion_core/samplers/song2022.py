"""Predictor-corrector sampling with the noised measurement process and a proximal mixing weight.

Song, Shen, Xing, Ermon 2022, "Solving inverse problems in medical imaging with score-based
generative models", ICLR 2022 (Algorithm 1, eq. 10). At every level sigma a measurement of the
noised image is drawn, y_sigma = y + sigma A z, and after each predictor (reverse diffusion, in
ancestral form) and each of the ``corrector_steps`` Langevin steps the state is moved towards it by
argmin_z (1 - lam) ||z - x||^2 + lam ||A z - y_sigma||^2 (``dc.prox`` with weight lam / (1 - lam);
lam = 1 is the hard replacement of the measured components).
``lam=None`` matches the weight to each step and the measurement noise (``dc.weight``), which makes
the corrector a proximal Langevin chain targeting p_sigma(x | y_sigma); as sigma -> 0 that is the
posterior.
"""

from __future__ import annotations

import itertools
import math

import torch

from diffusion_core.data_consistency import DataConsistency
from diffusion_core.denoiser import Denoiser
from diffusion_core.samplers.common import (
    Callback,
    SamplerStep,
    ancestral_step,
    denoise,
    langevin_dc_step,
    langevin_increment,
    sigma_list,
)


def _weight(dc: DataConsistency, lam: float | None, step: float) -> float:
    if lam is None:
        return dc.weight(step)
    return math.inf if lam >= 1.0 else lam / (1.0 - lam)


def sample_song2022(
    x: torch.Tensor,
    sigmas: torch.Tensor,
    denoiser: Denoiser,
    dc: DataConsistency,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    *,
    lam: float | None = None,
    corrector_steps: int = 1,
    snr: float = 0.16,
) -> torch.Tensor:
    """Sample from x = x_T at sigmas[0]; NFE as :func:`~diffusion_core.samplers.score_mri.sample_score_mri`."""
    if lam is not None and not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam: expected in [0, 1] or None, got {lam}")
    levels = sigma_list(sigmas)
    total = len(levels) - 1
    for i, (sigma, sigma_next) in enumerate(itertools.pairwise(levels)):
        x0 = denoise(denoiser, x, sigma, i + 1)
        x = ancestral_step(x, x0, sigma, sigma_next, generator)
        y_s = dc.noised(sigma_next, x, generator)
        x = dc.prox(x, _weight(dc, lam, sigma**2 - sigma_next**2), y_s)
        for _ in range(corrector_steps if sigma_next > 0 else 0):
            d = denoise(denoiser, x, sigma_next, i + 1)
            y_s = dc.noised(sigma_next, x, generator)
            if lam is None:
                x = langevin_dc_step(x, d, sigma_next, snr, dc, generator, y_s)
            else:
                inc, _ = langevin_increment(x, d, sigma_next, snr, generator)
                x = dc.prox(x + inc, _weight(dc, lam, 0.0), y_s)
        if callback is not None:
            callback(SamplerStep(i + 1, total, sigma, x, x0))
    return x
