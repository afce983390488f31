"""Seeded Cartesian sampling masks (ky, kx) float32, 1 = sampled; "columns" are the last axis kx.

- :func:`random_columns_mask`: uniformly random columns plus a centred ACS block (fastMRI style).
- :func:`equispaced_columns_mask`: every R-th column plus a centred ACS block.
- :func:`poisson_disc_mask`: 2D variable-density Poisson-disc points plus a centred calibration square.

:func:`phase_encode_axis` tells a line mask (readouts) from a 2D pattern, and along which axis it
is undersampled.
"""

from __future__ import annotations

import numpy as np
import torch


def _check(shape: tuple[int, int], acceleration: float, acs: int, name: str) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape: expected (ky, kx) with positive sizes, got {tuple(shape)}")
    if not acceleration >= 1.0:
        raise ValueError(f"acceleration: expected a number >= 1, got {acceleration}")
    ny, nx = int(shape[0]), int(shape[1])
    size = nx if name == "acs" else min(ny, nx)
    if not 0 <= acs <= size:
        raise ValueError(f"{name}: expected 0 <= {name} <= {size}, got {acs}")
    return ny, nx


def _centre_block(n: int, width: int) -> slice:
    """Centred block of ``width`` indices around n // 2 (the k-space centre of fft2c)."""
    start = n // 2 - width // 2
    return slice(start, start + width)


def _columns_to_mask(ny: int, cols: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.broadcast_to(cols.astype(np.float32), (ny, cols.size)).copy())


def random_columns_mask(
    shape: tuple[int, int], acceleration: float, acs: int, seed: int
) -> torch.Tensor:
    """Random column mask: a centred block of ``acs`` columns plus uniformly random others.

    Exactly ``round(kx / acceleration)`` columns are sampled in total (at least the ACS block).
    Returns (ky, kx) float32; the same ``seed`` gives the same mask.
    """
    ny, nx = _check(shape, acceleration, acs, "acs")
    cols = np.zeros(nx, dtype=bool)
    cols[_centre_block(nx, acs)] = True
    n_extra = max(round(nx / acceleration) - acs, 0)
    rng = np.random.default_rng(seed)
    cols[rng.choice(np.flatnonzero(~cols), size=n_extra, replace=False)] = True
    return _columns_to_mask(ny, cols)


def equispaced_columns_mask(shape: tuple[int, int], acceleration: float, acs: int) -> torch.Tensor:
    """Every ``acceleration``-th column (rounded, aligned on the centre column) plus ``acs`` ACS columns.

    The ACS block makes the net acceleration somewhat lower than ``acceleration``. Returns (ky, kx) float32.
    """
    ny, nx = _check(shape, acceleration, acs, "acs")
    cols = np.zeros(nx, dtype=bool)
    cols[_centre_block(nx, acs)] = True
    centre = nx // 2
    offsets = np.arange(
        -np.floor(centre / acceleration), np.floor((nx - 1 - centre) / acceleration) + 1
    )
    cols[np.round(centre + offsets * acceleration).astype(int)] = True
    return _columns_to_mask(ny, cols)


def _dart_throw(radius: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Visit pixels in ``order``; keep one if no kept pixel lies within its own ``radius`` (pixels)."""
    ny, nx = radius.shape
    keep = np.zeros((ny, nx), dtype=bool)
    reach = int(np.ceil(radius.max()))
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    dist2 = (yy**2 + xx**2).astype(np.float64)
    padded = np.zeros((ny + 2 * reach, nx + 2 * reach), dtype=bool)
    for flat in order:
        y, x = divmod(int(flat), nx)
        r2 = radius[y, x] ** 2
        window = padded[y : y + 2 * reach + 1, x : x + 2 * reach + 1]
        if not (window & (dist2 < r2)).any():
            padded[y + reach, x + reach] = True
            keep[y, x] = True
    return keep


def poisson_disc_mask(
    shape: tuple[int, int],
    acceleration: float,
    calib: int,
    seed: int,
    *,
    density_power: float = 1.0,
) -> torch.Tensor:
    """Variable-density 2D Poisson-disc mask with a fully sampled ``calib`` x ``calib`` centre square.

    Points keep a minimum distance that grows linearly with the normalised k-space radius
    (``1 + 4 * r**density_power`` times a scale); the scale is found by bisection so that the
    total sampled fraction is ``1 / acceleration`` (within one bisection step, about 1 %).
    Returns (ky, kx) float32.
    """
    ny, nx = _check(shape, acceleration, calib, "calib")
    ky = (np.arange(ny) - ny // 2) / (ny / 2)
    kx = (np.arange(nx) - nx // 2) / (nx / 2)
    rad = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2) / np.sqrt(2.0)
    profile = 1.0 + 4.0 * rad**density_power
    order = np.random.default_rng(seed).permutation(ny * nx)
    square = np.zeros((ny, nx), dtype=bool)
    square[_centre_block(ny, calib), _centre_block(nx, calib)] = True
    target = ny * nx / acceleration
    lo, hi = 0.1, float(max(ny, nx))
    best = square
    for _ in range(14):
        scale = np.sqrt(lo * hi)
        mask = _dart_throw(scale * profile, order) | square
        best = mask
        if abs(mask.sum() - target) <= 0.01 * target:
            break
        if mask.sum() > target:
            lo = scale
        else:
            hi = scale
    return torch.from_numpy(best.astype(np.float32))


def phase_encode_axis(mask: torch.Tensor) -> int | None:
    """The axis along which a line mask (ky, kx) is undersampled, or None for a 2D pattern.

    Lines are readouts: every sampled row (or every sampled column) is one contiguous run at
    least half as long as the extent all of them span, so that an asymmetric echo or partial
    Fourier in the readout (unmeasured entries at one edge) and calibration lines longer than the
    rest are still lines. 0 if the rows are the readouts (lines chosen along ky, as every 2D
    Cartesian acquisition), 1 if the columns are (:func:`random_columns_mask`); a sampled
    rectangle alone is read along its longer runs. A 2D (Poisson-like) mask has rows and columns
    of scattered entries.
    """
    m = mask != 0
    rows, columns = _readout_lines(m), _readout_lines(m.T)
    if rows and columns:  # a rectangle (only a calibration block): the longer runs are readouts
        return 0 if float(m.float().mean(1).max()) >= float(m.float().mean(0).max()) else 1
    return 0 if rows else 1 if columns else None


def _readout_lines(m: torch.Tensor) -> bool:
    """Every sampled row of m (rows, columns) bool is one contiguous run of at least half the
    columns the sampled rows span together."""
    rows = m[m.any(1)]
    if rows.shape[0] == 0:
        return False
    starts = rows[:, :1].sum(1) + (rows[:, 1:] & ~rows[:, :-1]).sum(1)
    columns = rows.any(0).nonzero()
    extent = int(columns[-1] - columns[0]) + 1
    return bool((starts == 1).all()) and int(rows.sum(1).min()) * 2 >= extent


def regular_spacing(mask: torch.Tensor, axis: int) -> int | None:
    """The spacing R of a regular line mask (every R-th line plus a calibration block, as a
    scanner's GRAPPA / SENSE acquisition), or None for irregular (random) line sampling.

    ``axis`` is :func:`phase_encode_axis`'s: 0 if the rows of mask (ky, kx) are the readouts.
    Regular: at least 4 sampled lines outside the calibration block (the longest sampled run
    through the centre line), all on one grid of spacing R >= 2 (one residue mod R, R their
    smallest gap), with at least 90 % of that grid's positions between the first and the last
    of them sampled (a few dropped lines, partial Fourier at either end are still regular).
    """
    m = (mask != 0).cpu()
    lines = (m.any(1) if axis == 0 else m.any(0)).numpy()
    n = lines.size
    lo = hi = n // 2
    if not lines[lo]:
        return None
    while lo > 0 and lines[lo - 1]:
        lo -= 1
    while hi < n - 1 and lines[hi + 1]:
        hi += 1
    outside = np.flatnonzero(lines)
    outside = outside[(outside < lo) | (outside > hi)]
    if outside.size < 4:
        return None
    gaps = np.diff(outside)
    gaps = gaps[(outside[:-1] > hi) | (outside[1:] < lo)]  # not across the calibration block
    spacing = int(gaps.min()) if gaps.size else 0
    if spacing < 2 or np.unique(outside % spacing).size != 1:
        return None
    grid = np.arange(outside[0], outside[-1] + 1, spacing)
    grid = grid[(grid < lo) | (grid > hi)]
    return spacing if outside.size >= 0.9 * grid.size else None
