"""Magnitude volumes (NIfTI / MGZ) -> isotropic volumes -> 2D slices along all three axes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh")


def is_volume_file(path: Path) -> bool:
    """True for the file types nibabel reads here (.nii, .nii.gz, .mgz, .mgh)."""
    return path.name.lower().endswith(VOLUME_SUFFIXES)


def volume_stem(path: Path) -> str:
    """File name without its volume suffix: ``a/b/t1.nii.gz`` -> ``t1``."""
    name = path.name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def load_volume(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a 3D magnitude volume with nibabel: (data (x, y, z) float32, voxel size in mm).

    A 4D file with one frame is squeezed; anything else that is not 3D is an error.
    """
    import nibabel as nib

    try:
        image: Any = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for unreadable files
        raise ValueError(f"{path}: not a readable NIfTI/MGZ volume ({err})") from err
    data = np.asarray(image.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume, got shape {data.shape}")
    if np.iscomplexobj(data) or not np.isfinite(data).all():
        raise ValueError(f"{path}: expected finite real magnitude data")
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    return np.abs(data), zooms  # type: ignore[return-value]


def resample_isotropic(
    volume: np.ndarray, zooms: tuple[float, float, float], pixel_mm: float
) -> np.ndarray:
    """Resample ``volume`` (x, y, z) with voxel size ``zooms`` (mm) to ``pixel_mm`` on every axis.

    Downsampling averages (area); upsampling interpolates linearly.
    """
    size = [max(1, round(n * z / pixel_mm)) for n, z in zip(volume.shape, zooms, strict=True)]
    if list(volume.shape) == size:
        return volume.astype(np.float32, copy=False)
    x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    mode = "area" if all(s <= n for s, n in zip(size, volume.shape, strict=True)) else "trilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=size, mode=mode, **kwargs)[0, 0].numpy()


def foreground_threshold(volume: np.ndarray, fraction: float = 0.15) -> float:
    """Intensity above which a voxel counts as object: ``fraction`` of the volume's 99th percentile."""
    return fraction * float(np.percentile(volume, 99.0))


def nonempty_slices(
    volume: np.ndarray, min_foreground: float, min_size: int = 32
) -> list[np.ndarray]:
    """All 2D slices along the three axes whose object fraction is at least ``min_foreground``.

    A slice is kept when the fraction of its pixels above :func:`foreground_threshold` of the whole
    volume reaches ``min_foreground`` and both of its sides have at least ``min_size`` pixels.
    """
    threshold = foreground_threshold(volume)
    slices: list[np.ndarray] = []
    for axis in range(3):
        moved = np.moveaxis(volume, axis, 0)
        if min(moved.shape[1:]) < min_size:
            continue
        fractions = (moved > threshold).mean(axis=(1, 2))
        slices.extend(
            np.ascontiguousarray(moved[i]) for i in np.flatnonzero(fractions >= min_foreground)
        )
    return slices
