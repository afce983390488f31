"""ESPIRiT maps against BART's ``ecalib -m1`` and against true maps, on noisy data.

Agreement is the median over a region of the per-pixel, phase-invariant coil-wise correlation
|<m_ours, m_ref>| / (|m_ours| |m_ref|); a pixel where one map set is cropped to zero counts 0.
The reference's region is BART's support (for BART) or the object (for true maps). Before the
calibration block was limited to 24 x 24 (it spanned the whole readout, threshold 0.02, crop 0.95)
these medians were: Shepp-Logan at noise 0.05, 0.30 to the true maps and to BART; the 2-channel
GRE phantom, 0.72 to BART; simulated 8 / 16 / 32 coils at 2 % noise, 0.31 / 0.20 / 0.12 to the truth.
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from bart_io import BRAIN, bart, needs_bart, read_cfl, write_cfl
from shepp_logan_files import generate, needs_ismrmrd_tools, read

from diffusion_core.espirit import espirit_maps
from diffusion_core.fft import fft2c
from diffusion_core.masks import poisson_disc_mask, random_columns_mask

EVAL = BRAIN.parent
AGREE = 0.95


def agreement(maps: torch.Tensor, reference: torch.Tensor, region: torch.Tensor) -> float:
    num = (maps.conj() * reference).sum(0).abs()
    den = maps.abs().square().sum(0).sqrt() * reference.abs().square().sum(0).sqrt()
    return float((num / den.clamp_min(1e-12))[region].median())


def bart_maps(kspace: torch.Tensor, tmp: Path) -> torch.Tensor:
    write_cfl(tmp / "k", kspace.numpy())
    bart("ecalib", "-m1", tmp / "k", tmp / "s")
    return torch.from_numpy(read_cfl(tmp / "s").copy())


def check_against_bart(kspace: torch.Tensor, mask: torch.Tensor | None, tmp: Path) -> torch.Tensor:
    maps = espirit_maps(kspace, mask)
    reference = bart_maps(kspace, tmp)
    support = reference.abs().sum(0) > 0
    assert agreement(maps, reference, support) >= AGREE
    # the same support: crop and eigenvalues agree, not only the directions
    assert float(((maps.abs().sum(0) > 0) != support).float().mean()) < 0.01
    return maps


@needs_bart
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["full", "columns_r4", "columns_r8", "poisson_r8"])
def test_real_brain_agrees_with_bart(kind: str, tmp_path: Path) -> None:
    full = torch.from_numpy(np.load(BRAIN))
    shape = (full.shape[-2], full.shape[-1])
    mask = {
        "full": None,
        "columns_r4": random_columns_mask(shape, 4, 20, seed=0),
        "columns_r8": random_columns_mask(shape, 8, 16, seed=0),
        "poisson_r8": poisson_disc_mask(shape, 8, 20, seed=0),
    }[kind]
    check_against_bart(full if mask is None else full * mask, mask, tmp_path)


@needs_bart
@needs_ismrmrd_tools
@pytest.mark.slow
@pytest.mark.parametrize(
    ("noise", "acceleration"), [(0.01, 2), (0.05, 1), (0.05, 4), (0.2, 2)]
)  # 0.05 is the generator's default noise level
def test_shepp_logan_maps_agree_with_the_files_true_maps(
    noise: float, acceleration: int, tmp_path: Path
) -> None:
    path = generate(
        tmp_path / "sl.h5",
        matrix=128,
        coils=8,
        acceleration=acceleration,
        noise=noise,
        calib_width=24 if acceleration > 1 else 0,
    )
    kspace, mask, csm = read(path)
    with h5py.File(path, "r") as f:
        phantom = f["dataset/phantom"][0]
    obj = torch.from_numpy(np.hypot(phantom["real"], phantom["imag"]) > 1e-3)
    k, m = torch.from_numpy(kspace), torch.from_numpy(mask)
    maps = espirit_maps(k, m)
    assert agreement(maps, torch.from_numpy(csm), obj) >= AGREE
    if noise <= 0.05:  # at 0.2 the maps outside the object are noise, in BART's as in ours
        check_against_bart(k, m, tmp_path)


@needs_bart
@pytest.mark.parametrize("name", ["phantom2ch_gre_full", "phantom2ch_gre_bodycoil_full"])
def test_two_channel_phantoms_agree_with_bart(name: str, tmp_path: Path) -> None:
    kspace = torch.from_numpy(np.load(EVAL / f"{name}_c_y_x.npy"))
    check_against_bart(kspace, None, tmp_path)


def simulated_coils(coils: int, noise: float, shape=(96, 80), seed: int = 0):
    """Elliptical object, Gaussian coil profiles in two rings (narrower for many coils), complex
    noise of ``noise`` times the largest k-space magnitude."""
    ny, nx = shape
    y, x = torch.meshgrid(torch.linspace(-1, 1, ny), torch.linspace(-1, 1, nx), indexing="ij")
    inside = (y / 0.8) ** 2 + (x / 0.7) ** 2 < 1
    image = inside * (1 + 0.5 * torch.cos(3 * x) * torch.sin(2 * y)) * torch.exp(1j * 0.5 * x)
    width = 1.5 if coils <= 8 else 0.8
    profiles = []
    for c in range(coils):
        a = 2 * math.pi * c / coils
        ring = 1.3 if c % 2 == 0 else 1.1
        mag = torch.exp(-((y - ring * math.sin(a)) ** 2 + (x - ring * math.cos(a)) ** 2) / width)
        profiles.append(mag * torch.exp(1j * (a + 0.7 * x * math.cos(a) + 0.5 * y)))
    sens = torch.stack(profiles).to(torch.complex64)
    kspace = fft2c(sens * image)
    g = torch.Generator().manual_seed(seed)
    kspace = kspace + noise * float(kspace.abs().max()) * torch.randn(
        kspace.shape, generator=g, dtype=torch.complex64
    )
    return kspace, sens, inside


@pytest.mark.parametrize("coils", [8, 16, 32])
def test_simulated_coils_agree_with_the_truth_on_noisy_data(coils: int) -> None:
    kspace, sens, inside = simulated_coils(coils, noise=0.02)
    mask = random_columns_mask(kspace.shape[-2:], 4, 24, seed=0)
    maps = espirit_maps(kspace * mask, mask)
    assert agreement(maps, sens, inside) >= AGREE
    # the crop keeps the object: no pixel of it is lost
    assert bool((maps.abs().sum(0) > 0)[inside].all())
