"""Centred, orthonormal 2D Fourier transforms over the last two dimensions."""

from __future__ import annotations

import torch

_DIMS = (-2, -1)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Image (..., y, x) -> k-space (..., ky, kx); centred and unitary (``norm='ortho'``)."""
    x = torch.fft.ifftshift(x, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.fft2(x, dim=_DIMS, norm="ortho"), dim=_DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """k-space (..., ky, kx) -> image (..., y, x); the exact inverse and adjoint of :func:`fft2c`."""
    k = torch.fft.ifftshift(k, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.ifft2(k, dim=_DIMS, norm="ortho"), dim=_DIMS)
