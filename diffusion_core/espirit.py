"""ESPIRiT coil sensitivities from the calibration block alone (Uecker et al., MRM 2014), in torch.

Steps: calibration matrix of all ``k x k`` patches of the calibration block (c coils) -> SVD ->
keep the signal subspace (singular values >= ``threshold`` times the largest) -> per pixel, the
c x c matrix W(r) = (1/k^2) sum_n K_n(r) K_n(r)^H of the kernels' image-space responses -> its top
eigenvector is the map, and pixels whose top eigenvalue is below ``crop`` are set to zero.

W(r) is a trigonometric polynomial of degree k - 1, so it is computed exactly on a small 2k x 2k
grid and zero-padded in frequency to the image size (no per-pixel kernel transforms, no
interpolation error). The map phase is fixed relative to the first principal component of the
maps (a "virtual body coil"), which keeps the image phase smooth.
"""

from __future__ import annotations

import torch

from diffusion_core.calibration import Region, calibration_data


def _kernels(cal: torch.Tensor, kernel_size: int, threshold: float) -> torch.Tensor:
    """Signal-subspace kernels (n, c, k, k) of the calibration block cal (c, ny, nx)."""
    c = cal.shape[0]
    k = kernel_size
    patches = cal.unfold(1, k, 1).unfold(2, k, 1)  # (c, py, px, k, k)
    a = patches.permute(1, 2, 0, 3, 4).reshape(-1, c * k * k)
    # Right singular vectors from the small Gram matrix: A^H A = V diag(s^2) V^H.
    gram = (a.mH @ a).to(torch.complex128)
    evals, evecs = torch.linalg.eigh(gram)
    s = evals.flip(0).clamp_min(0).sqrt()
    v = evecs.flip(1)  # columns: right singular vectors, largest first
    n = int((s >= threshold * s[0]).sum())
    # Each patch (as a column vector) lies in span(conj(V)); those vectors are the kernels.
    return v[:, :n].conj().T.reshape(n, c, k, k).to(cal.dtype)


def _image_space_matrices(kernels: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """W(r) for every pixel of an image of ``shape``: (y, x, c, c), centred like ifft2c."""
    n, c, k, _ = kernels.shape
    m = 2 * k
    grid = kernels.new_zeros(n, c, m, m)
    grid[..., :k, :k] = kernels
    resp = torch.fft.ifft2(grid, norm="forward")  # K_n(r) = sum_p v_n[p] exp(+2 pi i p r)
    w_small = torch.einsum("nixy,njxy->ijxy", resp, resp.conj()) / (k * k)
    coeff = torch.fft.fft2(w_small, norm="forward")  # frequencies -(k-1)..k-1, wrapped mod m
    ny, nx = shape
    d = torch.arange(-(k - 1), k, device=kernels.device)
    small_y, small_x = (d % m)[:, None], (d % m)[None, :]
    full_y, full_x = (
        (d % ny)[:, None].expand(-1, d.numel()),
        (d % nx)[None, :].expand(d.numel(), -1),
    )
    full = kernels.new_zeros(ny, nx, c, c)
    # accumulate: on an image smaller than 2k - 1 frequencies alias, and sampling sums them
    values = coeff[:, :, small_y, small_x].permute(2, 3, 0, 1)
    full = full.index_put((full_y, full_x), values, accumulate=True).permute(2, 3, 0, 1)
    w = torch.fft.fftshift(torch.fft.ifft2(full, norm="forward"), dim=(-2, -1))
    return w.permute(2, 3, 0, 1)


def fix_phase(maps: torch.Tensor) -> torch.Tensor:
    """maps (c, y, x) -> same, each pixel rotated so that its projection on the first principal
    component of all pixels' maps (a virtual body coil) is real; zero pixels stay zero."""
    c = maps.shape[0]
    flat = maps.reshape(c, -1).to(torch.complex128)
    _, vecs = torch.linalg.eigh(flat @ flat.mH)
    virtual = (vecs[:, -1].conj() @ flat).reshape(maps.shape[1:])
    phase = torch.polar(torch.ones_like(virtual.real), -virtual.angle())
    return maps * phase.to(maps.dtype)


def espirit_maps(
    kspace: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    calib: Region | None = None,
    kernel_size: int = 6,
    threshold: float = 0.02,
    crop: float = 0.95,
) -> torch.Tensor:
    """One ESPIRiT map set from kspace (c, ky, kx) complex.

    Args:
        kspace: (coils, ky, kx) complex; zeros where not sampled.
        mask: (ky, kx) sampling mask; its fully sampled centre block is the calibration region
            (:func:`diffusion_core.calibration.calibration_region`). ``None`` = fully sampled.
        calib: explicit ACS slices (rows, columns); overrides ``mask``.
        kernel_size: k of the k x k ESPIRiT kernel.
        threshold: keep singular vectors with singular value >= threshold * the largest.
        crop: zero the maps where the top eigenvalue is below this (outside the object).

    Returns:
        maps (c, y, x) complex64 (dtype of kspace), unit norm over coils inside the object.
        A single coil gives a map of ones.
    """
    if kspace.ndim != 3:
        raise ValueError(f"kspace: expected shape (coils, ky, kx), got {tuple(kspace.shape)}")
    cal = calibration_data(kspace, mask, calib)
    c, ny, nx = kspace.shape[-3:]
    if min(cal.shape[-2:]) < kernel_size + 1:
        raise ValueError(
            f"calibration region: {tuple(cal.shape[-2:])} is too small for the {kernel_size}x{kernel_size} "
            f"ESPIRiT kernel; expected at least {kernel_size + 1} fully sampled rows and columns "
            "(pass more ACS lines, or a smaller kernel_size)"
        )
    if c == 1:
        return torch.ones_like(kspace)
    kernels = _kernels(cal, kernel_size, threshold)
    w = _image_space_matrices(kernels, (ny, nx))
    evals, evecs = torch.linalg.eigh(w)
    maps = evecs[..., -1].permute(2, 0, 1)  # (c, y, x)
    maps = fix_phase(maps)
    return torch.where(evals[..., -1] >= crop, maps, torch.zeros_like(maps)).to(kspace.dtype)
