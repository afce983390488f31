"""Fully sampled multi-coil k-space files (ISMRMRD HDF5, fastMRI HDF5) -> coil-combined slices.

ISMRMRD files are read with h5py directly (``diffusion_core`` never imports ismrmrd): the
acquisitions of ``/<dataset>/data`` are placed by ``kspace_encode_step_1`` (and ``_2`` for 3D,
which is then Fourier transformed into partitions), readout oversampling is removed as the
header's encoded/recon matrix sizes say, and each slice is combined with ESPIRiT maps
estimated from its central calibration block.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import torch

from diffusion_core.fft import ifft2c

# ISMRMRD acquisition flags (1-based bit numbers) of data that is not image k-space.
_SKIPPED_FLAGS = (19, 22, 23, 24, 25, 26)  # noise, phasecorr, navigation, rt/hp feedback, dummy
CALIB_SIZE = 24


def coil_combine(kspace: torch.Tensor, calib_size: int = CALIB_SIZE) -> torch.Tensor:
    """Coil-combined image (y, x) complex64 of fully sampled ``kspace`` (c, ky, kx).

    The maps come from ESPIRiT on the central ``calib_size`` block, as at reconstruction.
    """
    images = ifft2c(kspace)
    if kspace.shape[0] == 1:
        return images[0]
    from diffusion_core.espirit import espirit_maps

    ny, nx = kspace.shape[-2:]
    cy, cx = min(calib_size, ny), min(calib_size, nx)
    calib = (
        slice(ny // 2 - cy // 2, ny // 2 - cy // 2 + cy),
        slice(nx // 2 - cx // 2, nx // 2 - cx // 2 + cx),
    )
    maps = espirit_maps(kspace, calib=calib)
    return (maps.conj() * images).sum(0)


def _header_sizes(xml_text: str) -> tuple[int, int, int, int]:
    """(encoded x, recon x, encoded y, encoded z) from an ISMRMRD XML header (namespace ignored)."""
    root = ET.fromstring(xml_text)
    for node in root.iter():
        node.tag = node.tag.rsplit("}", 1)[-1]

    def size(space: str, axis: str) -> int:
        node = root.find(f"encoding/{space}/matrixSize/{axis}")
        if node is None or node.text is None:
            raise ValueError(f"ISMRMRD header: missing encoding/{space}/matrixSize/{axis}")
        return int(node.text)

    return (
        size("encodedSpace", "x"),
        size("reconSpace", "x"),
        size("encodedSpace", "y"),
        size("encodedSpace", "z"),
    )


def read_ismrmrd_kspace(path: Path, dataset: str = "dataset") -> list[torch.Tensor]:
    """Fully sampled 2D k-spaces (c, ky, kx) complex64 of an ISMRMRD HDF5 file, one per slice.

    Slices, contrasts, repetitions and sets become separate entries; 3D encodings are split
    into partitions. Raises ``ValueError`` naming the file if a k-space is not fully sampled.
    """
    with h5py.File(path, "r") as f:
        if f"{dataset}/data" not in f or f"{dataset}/xml" not in f:
            raise ValueError(f"{path}: not an ISMRMRD file (no /{dataset}/data and /{dataset}/xml)")
        xml_text = f[f"{dataset}/xml"][0]
        acquisitions = f[f"{dataset}/data"][:]
    enc_x, rec_x, ny, nz = _header_sizes(
        xml_text.decode() if isinstance(xml_text, bytes) else xml_text
    )
    groups: dict[tuple[int, ...], dict[tuple[int, int], np.ndarray]] = {}
    for acq in acquisitions:
        head = acq["head"]
        flags = int(head["flags"])
        if any(flags & (1 << (bit - 1)) for bit in _SKIPPED_FLAGS):
            continue
        idx = head["idx"]
        nc, ns = int(head["active_channels"]), int(head["number_of_samples"])
        raw = np.asarray(acq["data"], dtype=np.float32).reshape(nc, ns, 2)
        key = (int(idx["slice"]), int(idx["contrast"]), int(idx["repetition"]), int(idx["set"]))
        line = (int(idx["kspace_encode_step_1"]), int(idx["kspace_encode_step_2"]))
        groups.setdefault(key, {})[line] = raw[..., 0] + 1j * raw[..., 1]
    if not groups:
        raise ValueError(f"{path}: no imaging acquisitions found")
    out: list[torch.Tensor] = []
    for group, lines in sorted(groups.items()):
        nc, ns = next(iter(lines.values())).shape
        if len(lines) < ny * nz:
            raise ValueError(
                f"{path}: slice/contrast/repetition/set {group} has {len(lines)} of {ny * nz} "
                "phase-encode lines; training needs fully sampled k-space"
            )
        volume = np.zeros((nc, nz, ny, ns), dtype=np.complex64)
        for (ky, kz), data in lines.items():
            if ky >= ny or kz >= nz:
                raise ValueError(f"{path}: encoding step ({ky}, {kz}) outside the {ny}x{nz} matrix")
            volume[:, kz, ky, :] = data
        kspace = torch.from_numpy(volume)
        if nz > 1:  # partitions: inverse FFT along kz
            kspace = torch.fft.fftshift(
                torch.fft.ifft(torch.fft.ifftshift(kspace, dim=1), dim=1, norm="ortho"), dim=1
            )
        if enc_x == 2 * rec_x and ns == enc_x:  # remove readout oversampling in image space
            hybrid = torch.fft.fftshift(
                torch.fft.ifft(torch.fft.ifftshift(kspace, dim=-1), dim=-1, norm="ortho"), dim=-1
            )
            hybrid = hybrid[..., ns // 4 : ns // 4 + rec_x]
            kspace = torch.fft.fftshift(
                torch.fft.fft(torch.fft.ifftshift(hybrid, dim=-1), dim=-1, norm="ortho"), dim=-1
            )
        out.extend(kspace[:, z] for z in range(nz))
    return out


def read_fastmri_kspace(path: Path) -> tuple[list[torch.Tensor], tuple[int, int] | None]:
    """k-spaces (c, ky, kx) complex64 of a fastMRI-style file (``kspace``: (slices, [coils,] ky, kx)).

    Also returns the image size of ``reconstruction_rss`` when present (for a centred crop).
    """
    with h5py.File(path, "r") as f:
        if "kspace" not in f:
            raise ValueError(f"{path}: not a fastMRI file (no 'kspace' dataset)")
        kspace = np.asarray(f["kspace"][:])
        crop: tuple[int, int] | None = None
        if "reconstruction_rss" in f:
            ry, rx = f["reconstruction_rss"].shape[-2:]
            crop = (int(ry), int(rx))
    if not np.iscomplexobj(kspace) or kspace.ndim not in (3, 4):
        raise ValueError(
            f"{path}: 'kspace' must be complex (slices, [coils,] ky, kx), got {kspace.dtype} {kspace.shape}"
        )
    if kspace.ndim == 3:
        kspace = kspace[:, None]
    tensor = torch.from_numpy(kspace.astype(np.complex64))
    return list(tensor), crop


def center_crop(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centred crop of ``image`` (..., y, x) to at most ``size``."""
    ny, nx = image.shape[-2:]
    cy, cx = min(size[0], ny), min(size[1], nx)
    y0, x0 = (ny - cy) // 2, (nx - cx) // 2
    return image[..., y0 : y0 + cy, x0 : x0 + cx]


def kspace_file_images(path: Path) -> list[torch.Tensor]:
    """Coil-combined complex images (y, x) of every slice of an ISMRMRD or fastMRI HDF5 file."""
    with h5py.File(path, "r") as f:
        is_fastmri = "kspace" in f
    if is_fastmri:
        kspaces, crop = read_fastmri_kspace(path)
    else:
        kspaces, crop = read_ismrmrd_kspace(path), None
    images = [coil_combine(k) for k in kspaces]
    return [center_crop(im, crop) for im in images] if crop else images
