"""Noise: covariance from a noise scan, prewhitening (the coil axis is 0), complex Gaussian noise."""

from __future__ import annotations

import torch

from diffusion_core.validation import require_complex, require_finite


def noise_covariance(noise: torch.Tensor) -> torch.Tensor:
    """Coil noise covariance (c, c) = noise noise^H / n of noise (c, n_samples) complex.

    Scanner noise has zero mean, so the mean is not subtracted and dividing by n is unbiased.
    Extra trailing dims are flattened into samples.
    """
    require_complex(noise, "noise")
    require_finite(noise, "noise")
    if noise.ndim < 2 or noise.shape[1:].numel() < 1:
        raise ValueError(f"noise: expected shape (coils, n_samples), got {tuple(noise.shape)}")
    flat = noise.reshape(noise.shape[0], -1).to(torch.complex128)
    return ((flat @ flat.mH) / flat.shape[1]).to(noise.dtype)


def prewhitening_matrix(cov: torch.Tensor) -> torch.Tensor:
    """W (c, c) with W cov W^H = I: the inverse of the Cholesky factor of cov.

    W is lower triangular, so prewhitened coil i mixes only coils 0..i.
    Raises ``ValueError`` if cov is not square or not Hermitian positive definite.
    """
    require_complex(cov, "cov")
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov: expected a square (coils, coils) matrix, got {tuple(cov.shape)}")
    c128 = cov.to(torch.complex128)
    if not torch.allclose(c128, c128.mH, rtol=1e-4, atol=1e-6 * float(c128.abs().max())):
        raise ValueError("cov: expected a Hermitian matrix")
    chol, info = torch.linalg.cholesky_ex(c128)
    if int(info) != 0:
        raise ValueError("cov: expected a positive definite noise covariance (is a coil silent?)")
    eye = torch.eye(cov.shape[0], dtype=torch.complex128, device=cov.device)
    return torch.linalg.solve_triangular(chol, eye, upper=False).to(cov.dtype)


def prewhiten(data: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply W (c, c) across the coil axis of data (c, ...): returns W @ data, same shape."""
    require_complex(data, "data")
    c = data.shape[0]
    if matrix.shape != (c, c):
        raise ValueError(
            f"matrix: expected shape ({c}, {c}) for data with {c} coils, got {tuple(matrix.shape)}"
        )
    return torch.tensordot(matrix.to(data.dtype), data, dims=([1], [0]))


def complex_noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Complex Gaussian noise shaped like ``like``, standard deviation 1 per real channel."""
    real = like.real.dtype
    return torch.complex(
        torch.randn(like.shape, generator=generator, dtype=real, device=like.device),
        torch.randn(like.shape, generator=generator, dtype=real, device=like.device),
    )
