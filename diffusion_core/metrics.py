"""Image quality on magnitudes: PSNR, SSIM, NMSE.

Scaling rule (shared by all three): the magnitude of the reconstruction is first multiplied by the
least-squares scalar ``a = <|img|, |ref|> / <|img|, |img|>`` that best fits it to ``|ref|`` (over the
whole image), so that methods are compared on structure and noise, not on their arbitrary global
scaling. The peak for PSNR and the SSIM data range are ``max |ref|``. SSIM is scikit-image's
``structural_similarity`` (7x7 uniform window). Inputs are tensors or arrays (..., y, x), real or
complex; each metric is computed per image and averaged over leading dims (a float is returned).

PSNR can also be taken over a region only (``region=``, e.g. :func:`object_region`): the fit and the
peak stay those of the whole image, only the mean squared error is restricted, so the two values are
on one scale. Over the whole field of view a denoised estimate is also rewarded or penalised for the
noise floor of the reference's background; inside the object it is judged on anatomy.
"""

from __future__ import annotations

import numpy as np
import torch


def _abs(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """|x| as a float64 array."""
    return np.abs(
        x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    ).astype(np.float64)


def _magnitudes(
    ref: torch.Tensor | np.ndarray, img: torch.Tensor | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """|ref| and the best-scaled |img|, float64 arrays (..., y, x)."""
    r, i = _abs(ref), _abs(img)
    if r.shape != i.shape or r.ndim < 2:
        raise ValueError(f"img: expected the shape of ref {r.shape} (..., y, x), got {i.shape}")
    if not (np.isfinite(r).all() and np.isfinite(i).all()):
        raise ValueError("ref/img: expected finite values, got NaN or Inf")
    num = (i * r).sum(axis=(-2, -1), keepdims=True)
    den = (i * i).sum(axis=(-2, -1), keepdims=True)
    a = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return r, a * i


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values))


def nmse(ref: torch.Tensor | np.ndarray, img: torch.Tensor | np.ndarray) -> float:
    """||a|img| - |ref|||^2 / ||ref||^2 per image, averaged (see the module's scaling rule)."""
    r, i = _magnitudes(ref, img)
    return _mean(((i - r) ** 2).sum(axis=(-2, -1)) / (r**2).sum(axis=(-2, -1)))


def object_region(ref: torch.Tensor | np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Boolean (..., y, x): pixels whose |ref| exceeds ``fraction`` of its image's maximum."""
    r = _abs(ref)
    return r > fraction * r.max(axis=(-2, -1), keepdims=True)


def psnr(
    ref: torch.Tensor | np.ndarray,
    img: torch.Tensor | np.ndarray,
    region: np.ndarray | torch.Tensor | None = None,
) -> float:
    """20 log10(max|ref| / RMSE(a|img|, |ref|)) in dB per image, averaged (see the module's scaling rule).

    ``region``: boolean (..., y, x) (broadcast against the images); the RMSE is taken over its
    pixels only, with the fit and the peak of the whole image.
    """
    r, i = _magnitudes(ref, img)
    err = (i - r) ** 2
    if region is None:
        mse = err.mean(axis=(-2, -1))
    else:
        inside = np.asarray(region.cpu() if isinstance(region, torch.Tensor) else region)
        if inside.dtype != np.bool_:
            raise ValueError(f"region: expected a boolean mask, got dtype {inside.dtype}")
        try:
            inside = np.broadcast_to(inside, err.shape)
        except ValueError:
            raise ValueError(
                f"region: expected a shape that broadcasts to the images {err.shape}, "
                f"got {inside.shape}"
            ) from None
        count = inside.sum(axis=(-2, -1))
        if (count == 0).any():
            raise ValueError(
                "region: expected at least one pixel in every image, got an empty region"
            )
        mse = (err * inside).sum(axis=(-2, -1)) / count
    peak = r.max(axis=(-2, -1))
    return _mean(10.0 * np.log10(peak**2 / np.maximum(mse, 1e-30)))


def ssim(ref: torch.Tensor | np.ndarray, img: torch.Tensor | np.ndarray) -> float:
    """Mean SSIM (scikit-image) of a|img| against |ref|, averaged over leading dims."""
    from skimage.metrics import structural_similarity

    r, i = _magnitudes(ref, img)
    r2 = r.reshape(-1, *r.shape[-2:])
    i2 = i.reshape(-1, *i.shape[-2:])
    vals = [
        structural_similarity(a, b, data_range=float(a.max()) or 1.0)
        for a, b in zip(r2, i2, strict=True)
    ]
    return float(np.mean(vals))
