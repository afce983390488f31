import numpy as np
import pytest
import torch
from bart_io import bart, brain_reference, needs_bart, needs_brain, read_cfl, write_cfl
from complex_checks import random_complex

from diffusion_core.classical import cg_sense, l1_wavelet, zero_filled
from diffusion_core.espirit import espirit_maps
from diffusion_core.fft import fft2c
from diffusion_core.masks import equispaced_columns_mask, random_columns_mask
from diffusion_core.metrics import psnr


def smooth_case(ny=48, nx=40, coils=6, seed=0):
    """Unit-norm smooth maps, an elliptical complex object and its noiseless k-space."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, ny), torch.linspace(-1, 1, nx), indexing="ij")
    centres = 1.5 * torch.randn(coils, 2, generator=g)
    maps = torch.stack(
        [
            torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 2 + 1j * (cx * x + cy * y))
            for cy, cx in centres
        ]
    )
    maps = (maps / maps.abs().square().sum(0).sqrt()).to(torch.complex64)
    image = (((y / 0.8) ** 2 + (x / 0.7) ** 2) < 1) * (1 + 0.5 * x) * torch.exp(1j * y)
    image = image.to(torch.complex64)
    return fft2c(maps * image), maps, image


def test_zero_filled_matches_numpy():
    g = torch.Generator().manual_seed(1)
    kspace = random_complex((3, 8, 6), g)
    maps = random_complex((3, 8, 6), g)
    mask = (torch.rand(8, 6, generator=g) > 0.5).float()
    k = kspace.numpy() * mask.numpy()
    coil_images = np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    expected = (maps.numpy().conj() * coil_images).sum(0)
    np.testing.assert_allclose(
        zero_filled(kspace, mask, maps).numpy(), expected, rtol=1e-5, atol=1e-5
    )


def test_cg_sense_recovers_noiseless_image_at_r2():
    kspace, maps, image = smooth_case()
    mask = equispaced_columns_mask(kspace.shape[-2:], 2, 0)
    recon = cg_sense(kspace * mask, mask, maps, max_iter=60)
    assert float((recon - image).norm() / image.norm()) < 1e-3
    assert float((zero_filled(kspace, mask, maps) - image).norm() / image.norm()) > 0.3  # aliased


def test_cg_sense_tikhonov_closed_form_and_batch():
    kspace, maps, image = smooth_case()
    mask = torch.ones(kspace.shape[-2:])
    # fully sampled with unit-norm maps: A^H A = I, so x = A^H y / (1 + lam)
    recon = cg_sense(kspace, mask, maps, lam=0.25, max_iter=5)
    torch.testing.assert_close(recon, image / 1.25, atol=1e-5, rtol=1e-4)
    k2, maps2, _ = smooth_case(seed=3)
    masks = torch.stack([random_columns_mask(kspace.shape[-2:], 2, 8, s) for s in (0, 1)])
    batch = cg_sense(
        torch.stack([kspace, k2]) * masks[:, None], masks, torch.stack([maps, maps2]), 0.01
    )
    single = cg_sense(k2 * masks[1], masks[1], maps2, 0.01)
    torch.testing.assert_close(batch[1], single, atol=1e-5, rtol=1e-4)


def test_l1_wavelet_beats_cg_sense_and_is_scale_invariant():
    kspace, maps, image = smooth_case(ny=64, nx=64)
    mask = random_columns_mask((64, 64), 3, 8, seed=2)
    g = torch.Generator().manual_seed(4)
    noisy = (kspace + 0.02 * random_complex(tuple(kspace.shape), g)) * mask
    l1 = l1_wavelet(noisy, mask, maps, lam=0.01, max_iter=60)
    cg = cg_sense(noisy, mask, maps)
    assert psnr(image, l1) > psnr(image, cg) + 2.0
    # lam is relative to the image scale: scaling the data scales the result
    torch.testing.assert_close(
        l1_wavelet(1e3 * noisy, mask, maps, lam=0.01, max_iter=60), 1e3 * l1, rtol=1e-3, atol=1e-2
    )


def test_bad_inputs_raise_named_errors():
    kspace, maps, _ = smooth_case()
    mask = torch.ones(kspace.shape[-2:])
    with pytest.raises(ValueError, match="mask: expected a real"):
        cg_sense(kspace, mask[:, :-2], maps)
    with pytest.raises(ValueError, match="maps: shape"):
        zero_filled(kspace, mask, maps[:-1])
    with pytest.raises(TypeError, match="kspace: expected a complex"):
        l1_wavelet(kspace.real, mask, maps, lam=0.01)
    bad = kspace.clone()
    bad[1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match="kspace: contains 1 NaN/Inf"):
        zero_filled(bad, mask, maps)


@pytest.mark.slow
@needs_bart
@needs_brain
def test_brain_l1_wavelet_within_half_db_of_bart_pics(tmp_path):
    """Real brain, R=4 random columns, 20 ACS columns, maps from the ACS only (ours and BART's own)."""
    kspace, _, ref = brain_reference()
    mask = random_columns_mask(kspace.shape[-2:], 4, 20, seed=0)
    undersampled = kspace * mask
    maps = espirit_maps(undersampled, mask)
    ours = max(psnr(ref, l1_wavelet(undersampled, mask, maps, lam)) for lam in (0.002, 0.005))
    write_cfl(tmp_path / "k", undersampled.numpy())
    bart("ecalib", "-m1", tmp_path / "k", tmp_path / "s")
    theirs = []
    for lam in ("0.002", "0.005", "0.01", "0.02"):
        bart("pics", "-S", "-l1", "-r", lam, tmp_path / "k", tmp_path / "s", tmp_path / "x")
        theirs.append(psnr(ref, torch.from_numpy(read_cfl(tmp_path / "x"))))
    assert ours >= max(theirs) - 0.5
    assert ours > psnr(ref, cg_sense(undersampled, mask, maps)) + 3.0
