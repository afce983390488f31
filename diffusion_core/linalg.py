"""Conjugate gradients for Hermitian positive (semi-)definite systems, batched over leading dims.

Shared by CG-SENSE and by the fast sampler's data consistency.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _dot(a: torch.Tensor, b: torch.Tensor, ndim: int) -> torch.Tensor:
    """Real part of <a, b> over the last ``ndim`` dims, keeping them as size-1 for broadcasting."""
    dims = tuple(range(-ndim, 0))
    return (a.conj() * b).real.sum(dim=dims, keepdim=True)


def conjugate_gradient(
    normal: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    max_iter: int = 10,
    tol: float = 0.0,
    ndim: int = 2,
) -> torch.Tensor:
    """Solve ``normal(x) = rhs`` by CG; each item of the leading batch is solved independently.

    Args:
        normal: Hermitian positive definite linear map, e.g. ``lambda x: A.normal(x) + lam * x``.
        rhs: right-hand side (..., y, x).
        x0: starting point (defaults to zeros).
        max_iter: number of iterations.
        tol: stop early once every item's residual norm is below ``tol`` times its rhs norm.
        ndim: how many trailing dims form one vector (2 for an image).
    """
    x = torch.zeros_like(rhs) if x0 is None else x0
    r = rhs - normal(x) if x0 is not None else rhs.clone()
    p = r.clone()
    rr = _dot(r, r, ndim)
    stop = (tol * tol) * _dot(rhs, rhs, ndim)
    for _ in range(max_iter):
        if tol > 0 and bool((rr <= stop).all()):
            break
        ap = normal(p)
        alpha = rr / _dot(p, ap, ndim).clamp_min(torch.finfo(rr.dtype).tiny)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = _dot(r, r, ndim)
        p = r + (rr_new / rr.clamp_min(torch.finfo(rr.dtype).tiny)) * p
        rr = rr_new
    return x
