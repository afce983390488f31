"""A data weight chosen per scan by Morozov's discrepancy principle.

The final data-consistency step z = argmin ||z - v||^2 / 2 + w / 2 ||A z - y||^2 fixes how far the
result may stay from the measurement. A fixed w (the sampler's trust in its last denoised estimate
over the noise variance) knows nothing about this scan's noise or how well the prior fits it. The
discrepancy principle asks instead that the residual be as large as the noise itself:
||A z - y||^2 = tau * E||n||^2 = tau * 2 sigma^2 m (m measured complex samples, sigma per real
channel). The residual falls monotonically with w, so w is found by bisection on log w; each trial
is one ``prox`` (``cg_iters`` CG iterations, no network evaluation).
"""

from __future__ import annotations

import math

import torch

from diffusion_core.data_consistency import DataConsistency


def discrepancy_prox(
    dc: DataConsistency,
    v: torch.Tensor,
    tau: float = 1.0,
    *,
    max_weight: float | None = None,
    decades: float = 10.0,
    bisections: int = 12,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``dc.prox`` of each image of v (B, ...) with its own weight w, such that
    ||A z - y||^2 = tau * ``dc.noise_energy()``, w * noise_sigma^2 searched by ``bisections``
    halvings of log w over ``decades`` below 10^6 (or below ``max_weight``).

    Returns (z (B, ...), w (B,)): z has the residual closest to the target from above found by
    the search. Where even the largest w leaves more residual (model error: the maps or the support
    cannot explain the data), the largest is used; an image whose residual is already within the
    target is returned as it is (w = 0). Noise-free data (sigma = 0) get ``prox`` at the largest w.

    ``max_weight``: the discrepancy principle as a cap on a weight the caller already chose: an
    image whose ``prox`` at ``max_weight`` leaves at least the target residual gets that prox
    (w = ``max_weight``, one ``prox``); only one that would fit the data closer than the noise
    gets a smaller weight.
    """
    if not tau > 0:
        raise ValueError(f"tau: expected > 0 (a multiple of the noise energy), got {tau}")
    top = math.inf if max_weight is None else max_weight
    if dc.noise_sigma == 0:
        return dc.prox(v, top), torch.full((v.shape[0],), top)
    target = tau * dc.noise_energy()
    var = dc.noise_sigma**2

    def residual(z: torch.Tensor) -> float:
        return float(dc.residual_norm(z)[0]) ** 2

    out, weights = [], []
    for item in v[:, None]:
        hi = 6.0 if max_weight is None else math.log10(max_weight * var)
        lo = hi - decades
        z = dc.prox(item, 10.0**hi / var)
        if residual(z) >= target or residual(item) <= target:
            fits = residual(z) >= target
            out.append(z if fits else item)
            weights.append(10.0**hi / var if fits else 0.0)
            continue
        best, best_w = None, 10.0**lo / var
        for _ in range(bisections):
            mid = 0.5 * (lo + hi)
            z = dc.prox(item, 10.0**mid / var)
            if residual(z) > target:
                lo, best, best_w = mid, z, 10.0**mid / var  # too far from the data: trust it more
            else:
                hi = mid
        out.append(dc.prox(item, best_w) if best is None else best)
        weights.append(best_w)
    return torch.cat(out), torch.tensor(weights)
