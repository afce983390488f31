"""Small synthetic training sources for the training tests: NIfTI volumes, ISMRMRD and fastMRI files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from diffusion_core.fft import fft2c


def ellipsoid_volume(shape: tuple[int, int, int], radii: tuple[float, float, float]) -> np.ndarray:
    """A uint8 volume: 200 inside an axis-aligned centred ellipsoid (radii in voxels), 0 outside."""
    grids = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij")
    inside = sum((g / r) ** 2 for g, r in zip(grids, radii, strict=True)) <= 1.0
    return (200 * inside).astype(np.uint8)


def write_nifti(path: Path, volume: np.ndarray, zooms: tuple[float, float, float]) -> Path:
    import nibabel as nib

    affine = np.diag([*zooms, 1.0])
    nib.save(nib.Nifti1Image(volume, affine), str(path))
    return path


def disc_image(n: int, seed: int) -> torch.Tensor:
    """(n, n) complex64: a disc with a random smooth texture and a linear phase ramp."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    texture = 1.0 + 0.3 * torch.sin(3 * x + float(torch.rand(1, generator=g)) * 6) * torch.cos(
        2 * y
    )
    magnitude = texture * ((x**2 + y**2) < 0.6).float()
    return torch.polar(magnitude, 0.5 * x + 0.3 * y)


def coil_maps(n: int, coils: int) -> torch.Tensor:
    """(coils, n, n) smooth complex sensitivities, normalised to unit sum of squares."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    angles = torch.arange(coils) * (2 * torch.pi / coils)
    cx, cy = 1.5 * torch.cos(angles), 1.5 * torch.sin(angles)
    mag = torch.exp(-((x - cx[:, None, None]) ** 2 + (y - cy[:, None, None]) ** 2) / 4)
    maps = torch.polar(mag, 0.4 * angles[:, None, None] + 0.2 * x)
    return maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()


def write_fastmri(path: Path, images: torch.Tensor, coils: int) -> Path:
    """fastMRI-style file: 'kspace' (slices, coils, ky, kx) complex64 of ``images`` (slices, y, x)."""
    maps = coil_maps(images.shape[-1], coils)
    kspace = fft2c(maps[None] * images[:, None])
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace.numpy().astype(np.complex64))
    return path


_HEADER = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <encoding>
    <encodedSpace><matrixSize><x>{ex}</x><y>{n}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fx}</x><y>200</y><z>5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>{n}</x><y>{n}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>200</x><y>200</y><z>5</z></fieldOfView_mm></reconSpace>
    <encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{m}</maximum>
      <center>{c}</center></kspace_encoding_step_1></encodingLimits>
    <trajectory>cartesian</trajectory>
  </encoding>
</ismrmrdHeader>"""


def write_ismrmrd(
    path: Path, image: torch.Tensor, coils: int, oversampling: int = 2, skip_line: int | None = None
) -> Path:
    """ISMRMRD file of one fully sampled slice of ``image`` (n, n) (optionally missing one line).

    The readout (x) is oversampled by ``oversampling`` (the image is zero-padded in x) and one
    noise acquisition comes first, as scanners write them.
    """
    import ismrmrd

    n = image.shape[-1]
    ex = n * oversampling
    padded = torch.zeros((n, ex), dtype=torch.complex64)
    padded[:, (ex - n) // 2 : (ex - n) // 2 + n] = image
    maps = torch.zeros((coils, n, ex), dtype=torch.complex64)
    maps[:, :, (ex - n) // 2 : (ex - n) // 2 + n] = coil_maps(n, coils)
    kspace = fft2c(maps * padded).numpy()
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(_HEADER.format(ex=ex, n=n, fx=200 * oversampling, m=n - 1, c=n // 2))
    noise = ismrmrd.Acquisition.from_array(
        (np.random.default_rng(0).standard_normal((coils, ex)) * 1e-3).astype(np.complex64)
    )
    noise.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    ds.append_acquisition(noise)
    for ky in range(n):
        if ky == skip_line:
            continue
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(kspace[:, ky, :]))
        acq.idx.kspace_encode_step_1 = ky
        ds.append_acquisition(acq)
    ds.close()
    return path
