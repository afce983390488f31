"""Find the fully sampled calibration (ACS) block of a Cartesian mask, and cut it out of k-space."""

from __future__ import annotations

import torch

from diffusion_core.validation import require_complex, require_finite, require_ndim

Region = tuple[slice, slice]


def calibration_region(mask: torch.Tensor) -> Region:
    """Largest fully sampled block around the k-space centre (ky // 2, kx // 2) of mask (ky, kx).

    Grows a rectangle from the centre sample one row or column at a time, on whichever side is
    still fully sampled, until no side can grow. For a column mask with an ACS block this is all
    rows by the ACS columns; for a Poisson-disc mask, its calibration square.
    Raises ``ValueError`` if the mask is not 2D or the centre sample is missing.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask: expected shape (ky, kx), got {tuple(mask.shape)}")
    sampled = (mask != 0).cpu()
    ny, nx = sampled.shape
    y0, y1, x0, x1 = ny // 2, ny // 2 + 1, nx // 2, nx // 2 + 1
    if not bool(sampled[y0, x0]):
        raise ValueError(
            "mask: the k-space centre (ky//2, kx//2) is not sampled; expected an ACS block"
        )
    grown = True
    while grown:
        grown = False
        if y0 > 0 and bool(sampled[y0 - 1, x0:x1].all()):
            y0, grown = y0 - 1, True
        if y1 < ny and bool(sampled[y1, x0:x1].all()):
            y1, grown = y1 + 1, True
        if x0 > 0 and bool(sampled[y0:y1, x0 - 1].all()):
            x0, grown = x0 - 1, True
        if x1 < nx and bool(sampled[y0:y1, x1].all()):
            x1, grown = x1 + 1, True
    return slice(y0, y1), slice(x0, x1)


def region_shape(region: Region, shape: tuple[int, int]) -> tuple[int, int]:
    """Size (rows, columns) of ``region`` inside an array of ``shape`` (ky, kx)."""
    return (len(range(*region[0].indices(shape[0]))), len(range(*region[1].indices(shape[1]))))


def limit_region(region: Region, shape: tuple[int, int], size: tuple[int, int]) -> Region:
    """``region`` of an array of ``shape`` cut to at most ``size`` (rows, columns) around its centre.

    BART's ``ecalib -r`` does the same: a calibration block longer than needed in one direction
    (the whole readout of a column mask) adds noise to the calibration matrix and no signal.
    """
    out = []
    for sl, n, limit in zip(region, shape, size, strict=True):
        start, stop, _ = sl.indices(n)
        length = stop - start
        if length > limit:
            start, stop = start + (length - limit) // 2, start + (length - limit) // 2 + limit
        out.append(slice(start, stop))
    return out[0], out[1]


def calibration_data(
    kspace: torch.Tensor,
    mask: torch.Tensor | None = None,
    calib: Region | None = None,
    max_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The calibration block of kspace (c, ky, kx): (c, ny_cal, nx_cal).

    ``calib`` (given ACS slices) wins over ``mask``; with neither, k-space is taken as fully sampled
    and the whole of it is the calibration region. ``max_size`` (rows, columns) limits the block
    around its centre (:func:`limit_region`).
    """
    require_complex(kspace, "kspace")
    require_ndim(kspace, 3, "kspace", "(coils, ky, kx)")
    require_finite(kspace, "kspace")
    if calib is None:
        if mask is not None:
            if tuple(mask.shape) != tuple(kspace.shape[-2:]):
                raise ValueError(
                    f"mask: shape {tuple(mask.shape)} does not match the k-space shape "
                    f"{tuple(kspace.shape[-2:])}; expected (ky, kx)"
                )
            calib = calibration_region(mask)
        else:
            calib = (slice(None), slice(None))
    if max_size is not None:
        calib = limit_region(calib, (kspace.shape[-2], kspace.shape[-1]), max_size)
    return kspace[..., calib[0], calib[1]]
