"""ESPIRiT coil sensitivities from the calibration block alone (Uecker et al., MRM 2014), in torch.

Steps: the fully sampled centre, limited to ``calib_size`` in both directions -> calibration matrix
of all ``ky x kx`` patches of that block (c coils) -> SVD -> keep the signal subspace (singular
values above ``threshold`` times the largest) -> per pixel, the
c x c matrix W(r) = (1/(ky kx)) sum_n K_n(r) K_n(r)^H of the kernels' image-space responses -> its top
eigenvector is the map, and pixels whose top eigenvalue is below ``crop`` are set to zero.

W(r) is a trigonometric polynomial of degree k - 1, so it is computed exactly on a small 2ky x 2kx
grid and zero-padded in frequency to the image size (no per-pixel kernel transforms, no
interpolation error). The map phase is fixed relative to the first principal component of the
maps (a "virtual body coil"), which keeps the image phase smooth.

The defaults are BART's ``ecalib -m1`` (v0.8): a calibration block of at most 24 x 24, a 6 x 6
kernel, singular values above sqrt(0.001) of the largest (BART's ``-t 0.001`` is a threshold on
their squares) and crop 0.8. A block spanning the whole readout, as a column mask's ACS does,
puts mostly noise into the calibration matrix: on ismrmrd-tools' Shepp-Logan (noise 0.05) such a
block with threshold 0.02 gave maps with a median correlation of 0.30 to the file's true maps,
the 24 x 24 block 1.00 (tests/diffusion_core/test_espirit_agreement.py). One departure from
BART: a block of fewer than 11 lines in a direction gets a kernel of half its lines there
(:func:`kernel_shape`), where BART's 6 x 6 kernel crops part of the object away.
"""

from __future__ import annotations

import torch

from diffusion_core.calibration import Region, calibration_data

CALIB_SIZE = 24
THRESHOLD = 0.001**0.5
MIN_KERNEL = 3


def kernel_shape(block: tuple[int, int], kernel_size: int) -> tuple[int, int]:
    """The kernel (ky, kx) for a calibration block of ``block`` (rows, columns): ``kernel_size``,
    limited in each direction to ``(n + 1) // 2`` of the block's ``n`` lines.

    Why: along a direction with n calibration lines a k-tap kernel fits at n - k + 1 positions,
    and the calibration matrix can only hold a signal subspace with as many dimensions along it as
    it has positions; with fewer positions than taps the subspace misses part of the object, W(r)'s
    top eigenvalue drops below ``crop`` there and the map is cut away. On the real 8-coil brain at
    128 x 100 with 9 ACS columns (4 positions of a 6-tap kernel) the 6 x 6 kernel kept 0.89 of
    the object (7 columns: 0.16; BART's ``ecalib -m1`` at 9 columns: 0.48), a 6 x 5 kernel 1.00
    (tests/diffusion_core/test_espirit_narrow.py). With the default 6, blocks of 11 lines or more
    keep the full kernel, as BART. Raises ``ValueError`` if a direction has fewer than
    ``2 min(kernel_size, 3) - 1`` lines: a kernel of under 3 taps cannot follow the coils.
    """
    ky, kx = (min(kernel_size, (n + 1) // 2) for n in block)
    if min(ky, kx) < min(kernel_size, MIN_KERNEL):
        need = 2 * min(kernel_size, MIN_KERNEL) - 1
        raise ValueError(
            f"calibration region: {block} is too small for an ESPIRiT kernel; expected at least "
            f"{need} fully sampled rows and columns (pass more ACS lines)"
        )
    return ky, kx


def _kernels(cal: torch.Tensor, kernel: tuple[int, int], threshold: float) -> torch.Tensor:
    """Signal-subspace kernels (n, c, ky, kx) of the calibration block cal (c, ny, nx)."""
    c = cal.shape[0]
    ky, kx = kernel
    patches = cal.unfold(1, ky, 1).unfold(2, kx, 1)  # (c, py, px, ky, kx)
    a = patches.permute(1, 2, 0, 3, 4).reshape(-1, c * ky * kx).to(torch.complex128)
    # Right singular vectors from the smaller Gram matrix: A^H A = V S^2 V^H, or A A^H = U S^2 U^H
    # and V = A^H U / S (many coils: fewer patches than kernel entries).
    wide = a.shape[0] < a.shape[1]
    evals, evecs = torch.linalg.eigh(a @ a.mH if wide else a.mH @ a)
    s = evals.flip(0).clamp_min(0).sqrt()
    if float(s[0]) <= 0:
        raise ValueError(
            "calibration region: holds no signal (all zeros); expected sampled ACS data"
        )
    n = int((s > threshold * s[0]).sum())
    v = a.mH @ evecs.flip(1)[:, :n] / s[:n] if wide else evecs.flip(1)[:, :n]
    # Each patch (as a column vector) lies in span(conj(V)); those vectors are the kernels.
    return v.conj().T.reshape(n, c, ky, kx).to(cal.dtype)


def _image_space_matrices(kernels: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """W(r) for every pixel of an image of ``shape``: (y, x, c, c), centred like ifft2c."""
    n, c, ky, kx = kernels.shape
    my, mx = 2 * ky, 2 * kx
    grid = kernels.new_zeros(n, c, my, mx)
    grid[..., :ky, :kx] = kernels
    resp = torch.fft.ifft2(grid, norm="forward")  # K_n(r) = sum_p v_n[p] exp(+2 pi i p r)
    w_small = torch.einsum("nixy,njxy->ijxy", resp, resp.conj()) / (ky * kx)
    coeff = torch.fft.fft2(w_small, norm="forward")  # frequencies -(k-1)..k-1, wrapped mod 2k
    ny, nx = shape
    dy = torch.arange(-(ky - 1), ky, device=kernels.device)
    dx = torch.arange(-(kx - 1), kx, device=kernels.device)
    small_y, small_x = (dy % my)[:, None], (dx % mx)[None, :]
    full_y, full_x = (
        (dy % ny)[:, None].expand(-1, dx.numel()),
        (dx % nx)[None, :].expand(dy.numel(), -1),
    )
    full = kernels.new_zeros(ny, nx, c, c)
    # accumulate: on an image smaller than 2k - 1 frequencies alias, and sampling sums them
    values = coeff[:, :, small_y, small_x].permute(2, 3, 0, 1)
    full = full.index_put((full_y, full_x), values, accumulate=True).permute(2, 3, 0, 1)
    w = torch.fft.fftshift(torch.fft.ifft2(full, norm="forward"), dim=(-2, -1))
    return w.permute(2, 3, 0, 1).contiguous()


def _top_eigenpair(w: torch.Tensor, squarings: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest eigenvalue (...) and its unit eigenvector (..., c) of Hermitian PSD matrices w (..., c, c).

    Power iteration by repeated squaring (w^64, trace-normalised), then two plain iterations and
    the Rayleigh quotient; like BART's orthogonal iteration, and unlike a batched LAPACK eigh it
    costs the same whatever the CPU's thread count (on a shared 2-core machine batched eigh of
    7,680 32 x 32 matrices took 170 s with two threads, 3.6 s with one).
    """
    b = w
    for _ in range(squarings):
        b = b @ b
        b = b / b.diagonal(dim1=-2, dim2=-1).sum(-1).real.clamp_min(1e-30)[..., None, None]
    columns = b.abs().square().sum(-2)
    v = b.gather(-1, columns.argmax(-1)[..., None, None].expand(*b.shape[:-1], 1))
    for _ in range(2):
        v = w @ v
        v = v / v.norm(dim=-2, keepdim=True).clamp_min(1e-30)
    value = (v.mH @ w @ v)[..., 0, 0].real
    return value, v[..., 0]


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
    calib_size: int | tuple[int, int] = CALIB_SIZE,
    kernel_size: int = 6,
    threshold: float = THRESHOLD,
    crop: float = 0.8,
    soft: float | None = None,
) -> torch.Tensor:
    """One ESPIRiT map set from kspace (c, ky, kx) complex.

    Args:
        kspace: (coils, ky, kx) complex; zeros where not sampled.
        mask: (ky, kx) sampling mask; its fully sampled centre block is the calibration region
            (:func:`diffusion_core.calibration.calibration_region`). ``None`` = fully sampled.
        calib: explicit ACS slices (rows, columns); overrides ``mask``.
        calib_size: the calibration block is at most this many rows and columns (or (rows,
            columns)) around the centre of the fully sampled region, as BART's ``ecalib -r``.
        kernel_size: the largest k of the ESPIRiT kernel; in each direction it is at most half
            the calibration block (:func:`kernel_shape`).
        threshold: keep singular vectors with singular value > threshold * the largest.
        crop: zero the maps where the top eigenvalue is not above this (outside the object).
        soft: experimental soft-SENSE weighting; ``None`` (default) keeps the hard 0/1 crop.
            A value above ``crop`` scales each pixel's map by :func:`soft_weights` of its top
            eigenvalue, a smooth ramp from 0 at ``crop`` to 1 at ``soft``, so that pixels whose
            maps are unreliable count less in the data consistency; the support (non-zero
            pixels) is the hard crop's.

    Returns:
        maps (c, y, x) complex64 (dtype of kspace), unit norm over coils inside the object.
        A single coil gives a map of ones.
    """
    w = _matrices(kspace, mask, calib, calib_size, kernel_size, threshold)
    if w is None:
        return torch.ones_like(kspace)
    value, vector = _top_eigenpair(w)
    maps = fix_phase(vector.permute(2, 0, 1))  # (c, y, x)
    if soft is not None:
        return (maps * soft_weights(value, crop, soft).to(maps.real.dtype)).to(kspace.dtype)
    return torch.where(value > crop, maps, torch.zeros_like(maps)).to(kspace.dtype)


def _matrices(
    kspace: torch.Tensor,
    mask: torch.Tensor | None,
    calib: Region | None,
    calib_size: int | tuple[int, int],
    kernel_size: int,
    threshold: float,
) -> torch.Tensor | None:
    """ESPIRiT's W(r) (y, x, c, c) of kspace (c, ky, kx); None for a single coil."""
    if kspace.ndim != 3:
        raise ValueError(f"kspace: expected shape (coils, ky, kx), got {tuple(kspace.shape)}")
    size = (calib_size, calib_size) if isinstance(calib_size, int) else calib_size
    cal = calibration_data(kspace, mask, calib, size)
    c, ny, nx = kspace.shape[-3:]
    kernel = kernel_shape((cal.shape[-2], cal.shape[-1]), kernel_size)
    if c == 1:
        return None
    return _image_space_matrices(_kernels(cal, kernel, threshold), (ny, nx))


def espirit_map_sets(
    kspace: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    calib: Region | None = None,
    calib_size: int | tuple[int, int] = CALIB_SIZE,
    kernel_size: int = 6,
    threshold: float = THRESHOLD,
    crop: float = 0.8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first two ESPIRiT map sets, as BART's ``ecalib -m2``: two (c, y, x), each set zero
    where its own eigenvalue is not above ``crop`` (arguments as :func:`espirit_maps`, whose
    result the first set is).

    The second set is the eigenvector of W(r) with the second eigenvalue (by deflation). It is
    non-zero where two different sensitivities explain the calibration data at one pixel: where
    the phase-encode field of view is smaller than the object, so that tissue from outside folds
    onto tissue inside, the case soft SENSE (Uecker et al. 2014, ESPIRiT, section on FOV
    limitations) models with two images. Elsewhere the second eigenvalue is noise (0.3-0.5 on the
    development cases) and the set is empty. A single coil gives ones and zeros.
    """
    w = _matrices(kspace, mask, calib, calib_size, kernel_size, threshold)
    if w is None:
        return torch.ones_like(kspace), torch.zeros_like(kspace)
    value, vector = _top_eigenpair(w)
    deflated = w - value[..., None, None] * (vector[..., :, None] * vector[..., None, :].conj())
    second, vector2 = _top_eigenpair(deflated)
    # each set exactly as espirit_maps makes its one (the same memory layout too, so that a
    # reconstruction with the first set alone is bit for bit the one-set one)
    first, other = (
        torch.where(lam > crop, maps, torch.zeros_like(maps)).to(kspace.dtype)
        for lam, maps in (
            (value, fix_phase(vector.permute(2, 0, 1))),
            (second, fix_phase(vector2.permute(2, 0, 1))),
        )
    )
    return first, other


def soft_weights(value: torch.Tensor, crop: float, top: float) -> torch.Tensor:
    """Per-pixel map weights in [0, 1] from top eigenvalues ``value`` (y, x): 0 where the value is
    not above ``crop`` (the hard crop's zeros), 1 from ``top`` on, a smoothstep (3t^2 - 2t^3)
    between, so the weight and its slope are continuous.

    Why: a hard crop trusts every kept pixel's map fully; where the top eigenvalue is low (the
    edge of the object, a head cut by the FOV) the map is least reliable, and a weight w < 1
    makes the data term at that pixel w^2 as strong relative to the prior (the sampler's image
    there is the object seen through w S). Measured on the held-out cases (top 0.99,
    benchmarks/results/quality_ablation_cpu.md section 8): +0.1 dB on the minimum, the R=4
    median -0.14 dB; the partial head's wrong maps (its FOV-edge columns) have eigenvalues of
    0.976 against 0.99 inside, so the weight barely touches them. Not the default for that
    reason. Raises ``ValueError`` unless crop < top.
    """
    if not top > crop:
        raise ValueError(f"soft: expected a ramp top above crop = {crop}, got {top}")
    t = ((value - crop) / (top - crop)).clamp(0.0, 1.0)
    return torch.where(value > crop, t * t * (3.0 - 2.0 * t), torch.zeros_like(t))
