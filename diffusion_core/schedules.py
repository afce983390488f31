"""Noise schedules: decreasing per-real-channel noise levels sigma_0 > ... > sigma_{n-1} > 0 = sigma_n.

All schedules are expressed in the variance-exploding parametrisation x = x0 + sigma * n that every
sampler here uses; a variance-preserving process x' = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) n is the
same process scaled by sqrt(alpha_bar), with sigma = sqrt(1 / alpha_bar - 1) (Karras et al. 2022,
Sec. 2-3), so one network with EDM preconditioning serves all of them. Every function returns
``n + 1`` values (float64): ``n`` strictly decreasing positive levels and a final 0.
"""

from __future__ import annotations

import math

import torch


def _finish(sigmas: torch.Tensor) -> torch.Tensor:
    out = torch.cat([sigmas.to(torch.float64), sigmas.new_zeros(1, dtype=torch.float64)])
    validate_sigmas(out)
    return out


def _check(n: int, sigma_min: float, sigma_max: float) -> None:
    if n < 1:
        raise ValueError(f"n: expected at least 1 step, got {n}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(
            f"sigma_min, sigma_max: expected 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}"
        )


def validate_sigmas(sigmas: torch.Tensor) -> None:
    """Raise ``ValueError`` unless sigmas is 1-D, finite, >= 0 and strictly decreasing."""
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(
            f"sigmas: expected a 1-D schedule of >= 2 levels, got shape {tuple(sigmas.shape)}"
        )
    if not bool(torch.isfinite(sigmas).all()) or bool((sigmas < 0).any()):
        raise ValueError("sigmas: expected finite, non-negative noise levels")
    steps = sigmas[1:] - sigmas[:-1]
    if bool((steps >= 0).any()):
        i = int(torch.nonzero(steps >= 0)[0])
        raise ValueError(
            f"sigmas: schedule must strictly decrease; sigmas[{i}]={float(sigmas[i]):.4g} "
            f"<= sigmas[{i + 1}]={float(sigmas[i + 1]):.4g}"
        )


def ve_geometric(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> torch.Tensor:
    """VE SDE levels, geometric from sigma_max to sigma_min (Song et al. 2021, "Score-based
    generative modeling through SDEs")."""
    _check(n, sigma_min, sigma_max)
    if n == 1:
        return _finish(torch.tensor([sigma_max]))
    t = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    return _finish(sigma_max * (sigma_min / sigma_max) ** t)


def _vp_sigma(alpha_bar: torch.Tensor) -> torch.Tensor:
    return (1.0 / alpha_bar - 1.0).sqrt()


def vp_linear(
    n: int, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3
) -> torch.Tensor:
    """VP SDE with linear beta(t) (Ho et al. 2020; Song et al. 2021), t uniform from 1 to t_min:
    sigma(t) = sqrt(exp(beta_min t + (beta_max - beta_min) t^2 / 2) - 1)."""
    if n < 1 or not 0 < beta_min < beta_max or not 0 < t_min < 1:
        raise ValueError(
            f"vp_linear: expected n >= 1, 0 < beta_min < beta_max, 0 < t_min < 1; "
            f"got {n}, {beta_min}, {beta_max}, {t_min}"
        )
    t = torch.linspace(1.0, t_min, n, dtype=torch.float64)
    return _finish(torch.expm1(beta_min * t + 0.5 * (beta_max - beta_min) * t**2).sqrt())


def vp_cosine(
    n: int, s: float = 0.008, t_min: float = 1e-3, sigma_max: float = 80.0
) -> torch.Tensor:
    """Cosine alpha_bar(t) = cos^2(pi/2 (t + s)/(1 + s)) / cos^2(pi/2 s/(1 + s)) (Nichol & Dhariwal
    2021), t uniform from 1 to t_min; sigma is clipped at sigma_max because alpha_bar(1) = 0."""
    if n < 1 or s <= 0 or not 0 < t_min < 1 or sigma_max <= 0:
        raise ValueError(f"vp_cosine: expected n >= 1, s > 0, 0 < t_min < 1; got {n}, {s}, {t_min}")
    t = torch.linspace(1.0, t_min, n, dtype=torch.float64)
    f = lambda u: torch.cos(0.5 * math.pi * (u + s) / (1 + s)) ** 2  # noqa: E731
    alpha_bar = f(t) / f(torch.zeros((), dtype=torch.float64))
    sig = _vp_sigma(alpha_bar.clamp_min(1e-30)).clamp_max(sigma_max)
    # clipping can repeat sigma_max at the start: keep the levels strictly decreasing
    keep = torch.cat([sig[:-1] > sig[1:], torch.tensor([True])])
    return _finish(sig[keep])


def karras(
    n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
) -> torch.Tensor:
    """EDM levels (Karras et al. 2022, eq. 5): (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) -
    sigma_max^(1/rho)))^rho for i = 0..n-1."""
    _check(n, sigma_min, sigma_max)
    if rho <= 0:
        raise ValueError(f"rho: expected > 0, got {rho}")
    if n == 1:
        return _finish(torch.tensor([sigma_max]))
    ramp = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _finish((hi + ramp * (lo - hi)) ** rho)
