"""The one intensity normalisation shared by training and reconstruction.

Rule: an image is divided by the 99th percentile of its magnitude, so that the bright tissue
of the object sits near 1 whatever the scanner's scaling. Training applies it to each whole
slice before cropping; reconstruction applies it to a first data-consistent estimate (CG-SENSE)
of the measured slice, samples in that scale, and multiplies the result back.
"""

from __future__ import annotations

import torch

QUANTILE = 0.99


def magnitude_scale(image: torch.Tensor, quantile: float = QUANTILE) -> torch.Tensor:
    """Scale (..., ) of image (..., y, x): the ``quantile`` of |image| over the last two dims.

    Returns a real tensor with the leading shape; it is clamped away from zero so that
    dividing an all-zero image is harmless.
    """
    mag = image.abs().flatten(-2).float()
    return torch.quantile(mag, quantile, dim=-1).clamp_min(1e-12)
