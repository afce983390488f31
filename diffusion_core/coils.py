"""Coil combination and SVD coil compression; the coil axis is -3 for images, 0 for raw data."""

from __future__ import annotations

import torch

from diffusion_core.validation import require_complex, require_finite


def rss(x: torch.Tensor) -> torch.Tensor:
    """Root-sum-of-squares over coils: x (..., c, y, x) -> (..., y, x) real."""
    if x.ndim < 3:
        raise ValueError(f"x: expected shape (..., coils, y, x), got {tuple(x.shape)}")
    return x.abs().pow(2).sum(dim=-3).sqrt()


def coil_compression_matrix(kspace_calib: torch.Tensor, n_virtual: int) -> torch.Tensor:
    """SVD coil compression: the (n_virtual, c) matrix onto the dominant virtual coils.

    kspace_calib (c, ...) complex, typically the calibration block. The rows are the
    conjugated left singular vectors of the (c, samples) data matrix, strongest first, so
    ``compress_coils`` keeps as much of the data's energy as any n_virtual coils can.
    """
    require_complex(kspace_calib, "kspace_calib")
    require_finite(kspace_calib, "kspace_calib")
    c = kspace_calib.shape[0]
    if not 1 <= n_virtual <= c:
        raise ValueError(
            f"n_virtual: expected 1 <= n_virtual <= {c} (the number of coils), got {n_virtual}"
        )
    flat = kspace_calib.reshape(c, -1).to(torch.complex128)
    _, vecs = torch.linalg.eigh(flat @ flat.mH)  # ascending eigenvalues
    return vecs.flip(1)[:, :n_virtual].mH.to(kspace_calib.dtype)


def compress_coils(kspace: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a (n_virtual, c) compression matrix to kspace (c, ...) -> (n_virtual, ...)."""
    require_complex(kspace, "kspace")
    if matrix.ndim != 2 or matrix.shape[1] != kspace.shape[0]:
        raise ValueError(
            f"matrix: expected shape (n_virtual, {kspace.shape[0]}) for kspace with "
            f"{kspace.shape[0]} coils, got {tuple(matrix.shape)}"
        )
    return torch.tensordot(matrix.to(kspace.dtype), kspace, dims=([1], [0]))
