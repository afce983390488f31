"""Early, specific checks on tensors handed to the core (each error names the item)."""

from __future__ import annotations

import torch


def require_complex(x: torch.Tensor, name: str) -> None:
    """Raise ``TypeError`` unless ``x`` is a complex tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a complex torch.Tensor, got {type(x).__name__}")
    if not x.is_complex():
        raise TypeError(f"{name}: expected a complex tensor (complex64), got dtype {x.dtype}")


def require_finite(x: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or Inf, saying how many entries are bad."""
    bad = ~torch.isfinite(torch.view_as_real(x) if x.is_complex() else x)
    if bad.any():
        raise ValueError(f"{name}: contains {int(bad.sum())} NaN/Inf values; expected finite data")


def require_ndim(x: torch.Tensor, min_ndim: int, name: str, layout: str) -> None:
    """Raise ``ValueError`` unless ``x`` has at least ``min_ndim`` dimensions."""
    if x.ndim < min_ndim:
        raise ValueError(f"{name}: expected shape {layout}, got {tuple(x.shape)}")


def require_broadcastable(mask: torch.Tensor, shape: torch.Size, name: str = "mask") -> None:
    """Raise ``ValueError`` unless ``mask`` broadcasts against an array of ``shape``."""
    try:
        torch.broadcast_shapes(mask.shape, shape)
    except RuntimeError:
        raise ValueError(
            f"{name}: shape {tuple(mask.shape)} does not match the k-space shape {tuple(shape)}; "
            "expected (ky, kx) or a shape that broadcasts against it"
        ) from None
