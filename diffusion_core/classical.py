"""Classical SENSE reconstructions, the baselines every result is compared with.

Shapes: kspace (..., c, ky, kx) complex, mask (ky, kx) or (..., ky, kx) real, maps (..., c, y, x)
complex; each returns an image (..., y, x) in the dtype of kspace. The forward model is
``A = M F S`` (:func:`diffusion_core.operators.sense_operator`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from diffusion_core.linalg import conjugate_gradient
from diffusion_core.normalization import magnitude_scale
from diffusion_core.operators import LinearOperator, sense_operator
from diffusion_core.validation import require_complex, require_finite, require_ndim


def _operator(kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor) -> LinearOperator:
    """Validate the three inputs and build A."""
    require_complex(kspace, "kspace")
    require_ndim(kspace, 3, "kspace", "(..., coils, ky, kx)")
    require_finite(kspace, "kspace")
    require_complex(maps, "maps")
    require_ndim(maps, 3, "maps", "(..., coils, y, x)")
    if maps.shape[-3:] != kspace.shape[-3:]:
        raise ValueError(
            f"maps: shape {tuple(maps.shape)} does not match kspace {tuple(kspace.shape)}; "
            "expected the same (coils, y, x)"
        )
    if mask.is_complex() or mask.ndim < 2 or mask.shape[-2:] != kspace.shape[-2:]:
        raise ValueError(
            f"mask: expected a real (..., ky, kx) mask with (ky, kx) = {tuple(kspace.shape[-2:])}, "
            f"got {tuple(mask.shape)} {mask.dtype}"
        )
    return sense_operator(maps.to(kspace.dtype), mask.to(kspace.real.dtype))


def zero_filled(kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Zero-filled SENSE combination A^H y = sum_c conj(S_c) F^H (M y_c)."""
    return _operator(kspace, mask, maps).adjoint(kspace)


def cg_sense(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    maps: torch.Tensor,
    lam: float = 0.0,
    max_iter: int = 30,
) -> torch.Tensor:
    """CG-SENSE with Tikhonov: argmin_x ||A x - y||^2 + lam ||x||^2, by ``max_iter`` CG steps.

    ``lam`` is dimensionless: A^H A has eigenvalues <= 1 for unit-norm maps and a 0/1 mask.
    """
    a = _operator(kspace, mask, maps)
    return conjugate_gradient(lambda x: a.normal(x) + lam * x, a.adjoint(kspace), max_iter=max_iter)


def _max_eigenvalue(a: LinearOperator, like: torch.Tensor, n_iter: int = 15) -> float:
    """Largest eigenvalue of A^H A by power iteration from a fixed start."""
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(like.shape, generator=g, dtype=like.dtype).to(like.device)
    norm = 1.0
    for _ in range(n_iter):
        x = a.normal(x)
        norm = float(x.abs().pow(2).sum().sqrt())
        x = x / max(norm, 1e-30)
    return norm


class _ShiftedWaveletShrink:
    """Complex soft-thresholding of orthogonal wavelet detail coefficients (PyWavelets), with
    random cycle spinning: the image is circularly shifted by a random offset before each prox."""

    def __init__(self, shape: tuple[int, int], wavelet: str, levels: int, seed: int) -> None:
        import pywt

        # no more levels than the smaller image side supports for this filter length
        levels = max(1, min(levels, pywt.dwt_max_level(min(shape), pywt.Wavelet(wavelet).dec_len)))
        self.wavelet, self.levels = wavelet, levels
        block = 2**levels
        self.padded = (math.ceil(shape[0] / block) * block, math.ceil(shape[1] / block) * block)
        self.rng = np.random.default_rng(seed)

    def __call__(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        import pywt

        ny, nx = x.shape[-2:]
        arr = np.zeros((*x.shape[:-2], *self.padded), dtype=np.complex128)
        arr[..., :ny, :nx] = x.detach().cpu().numpy()
        shift = tuple(int(s) for s in self.rng.integers(0, 2**self.levels, size=2))
        arr = np.roll(arr, shift, axis=(-2, -1))
        coeffs = pywt.wavedec2(
            arr, self.wavelet, mode="periodization", level=self.levels, axes=(-2, -1)
        )
        shrunk = [coeffs[0]] + [
            tuple(_soft(d, threshold) for d in details) for details in coeffs[1:]
        ]
        out = pywt.waverec2(shrunk, self.wavelet, mode="periodization", axes=(-2, -1))
        out = np.roll(out, tuple(-s for s in shift), axis=(-2, -1))[..., :ny, :nx]
        return torch.from_numpy(np.ascontiguousarray(out)).to(dtype=x.dtype, device=x.device)


def _soft(c: np.ndarray, threshold: float) -> np.ndarray:
    mag = np.abs(c)
    return c * np.maximum(0.0, 1.0 - threshold / np.maximum(mag, 1e-30))


def l1_wavelet(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    maps: torch.Tensor,
    lam: float,
    max_iter: int = 100,
    *,
    wavelet: str = "db4",
    levels: int = 4,
    seed: int = 0,
) -> torch.Tensor:
    """L1-wavelet compressed sensing: argmin_x 1/2 ||A x - y||^2 + lam ||W x||_1 by FISTA.

    ``lam`` is relative to the image scale: the data are divided by the 99th percentile of the
    zero-filled magnitude (:func:`diffusion_core.normalization.magnitude_scale`) before solving and
    the result is scaled back, so the same ``lam`` suits any scanner scaling. W is an orthogonal
    Daubechies wavelet (PyWavelets; ``levels`` levels, fewer on small images; approximation
    band not penalised) with random
    cycle spinning seeded by ``seed``, as in ``bart pics -l1``. Starts from the zero-filled image.
    """
    a = _operator(kspace, mask, maps)
    rhs = a.adjoint(kspace)
    scale = magnitude_scale(rhs)[..., None, None]
    rhs = rhs / scale
    step = 1.0 / max(_max_eigenvalue(a, rhs), 1e-12)
    shrink = _ShiftedWaveletShrink((rhs.shape[-2], rhs.shape[-1]), wavelet, levels, seed)
    x = rhs.clone()
    z, t = x, 1.0
    for _ in range(max_iter):
        x_new = shrink(z - step * (a.normal(z) - rhs), step * lam)
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        z = x_new + ((t - 1.0) / t_new) * (x_new - x)
        x, t = x_new, t_new
    return x * scale
