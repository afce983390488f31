import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from diffusion_core.metrics import nmse, object_region, psnr, ssim


def test_psnr_and_nmse_hand_computed_with_best_scalar_fit():
    ref = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    img = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    # a = <img, ref> / <img, img> = 4/3; residual (0, -2/3, 1/3, 1/3): MSE 1/6, ||.||^2 = 2/3
    assert psnr(ref, img) == pytest.approx(10 * math.log10(4 / (1 / 6)))
    assert nmse(ref, img) == pytest.approx((2 / 3) / 6)


def test_metrics_ignore_global_scale_and_phase():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(40, 30, generator=g) * torch.exp(1j * torch.rand(40, 30, generator=g))
    img = ref + 0.05 * torch.randn(40, 30, generator=g)
    other = 3.7 * np.exp(1j * 0.8) * img
    assert psnr(ref, other) == pytest.approx(psnr(ref, img), rel=1e-5)
    assert nmse(ref, other) == pytest.approx(nmse(ref, img), rel=1e-5)
    assert ssim(ref, other) == pytest.approx(ssim(ref, img), rel=1e-5)


def test_ssim_is_scikit_image_on_fitted_magnitudes_and_falls_with_noise():
    g = np.random.default_rng(1)
    y, x = np.mgrid[:64, :64]
    ref = ((y - 32) ** 2 + (x - 32) ** 2 < 400).astype(np.float64) * (1 + 0.3 * np.sin(x / 5))
    assert ssim(ref, ref) == pytest.approx(1.0)
    scores = []
    for level in (0.02, 0.1, 0.3):
        noisy = ref + level * g.standard_normal(ref.shape)
        fitted = np.abs(noisy) * (np.abs(noisy) * ref).sum() / (np.abs(noisy) ** 2).sum()
        expected = structural_similarity(ref, fitted, data_range=ref.max())
        assert ssim(ref, noisy) == pytest.approx(expected)
        scores.append(ssim(ref, noisy))
    assert scores[0] > scores[1] > scores[2]


def test_batched_psnr_is_the_mean_over_images_and_shape_error():
    ref = torch.ones(2, 8, 8)
    ref[:, 0, 0] = 2.0
    img = ref.clone()
    img[1, 3, 3] = 1.5
    assert psnr(ref, img) == pytest.approx((psnr(ref[0], img[0]) + psnr(ref[1], img[1])) / 2)
    assert nmse(ref, img) == pytest.approx(nmse(ref[1], img[1]) / 2)
    with pytest.raises(ValueError, match="img: expected the shape of ref"):
        psnr(ref, img[:, :4])


def test_psnr_over_a_region_keeps_the_whole_image_fit_and_peak():
    ref = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    img = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    region = object_region(ref, 0.4)  # |ref| > 0.8: the three non-zero pixels
    assert region.tolist() == [[False, True], [True, True]]
    # fit a = 4/3 over the whole image; residuals on the region (-2/3, 1/3, 1/3): MSE 2/9, peak 2
    assert psnr(ref, img, region) == pytest.approx(10 * math.log10(4 / (2 / 9)))
    assert psnr(ref, img, np.ones((2, 2), bool)) == pytest.approx(psnr(ref, img))
    # a background error leaves the object's PSNR as it was (up to the fit)
    g = torch.Generator().manual_seed(0)
    obj = torch.zeros(32, 32)
    obj[8:24, 8:24] = 1 + torch.rand(16, 16, generator=g)
    noisy_bg = obj + 0.2 * (obj == 0) * torch.rand(32, 32, generator=g)
    inside = object_region(obj)
    assert psnr(obj, noisy_bg, inside) > psnr(obj, noisy_bg) + 5
    dented = obj.clone()
    dented[12, 12] += 0.5
    batch = torch.stack([obj, obj])
    assert psnr(batch, torch.stack([noisy_bg, dented]), inside) == pytest.approx(
        psnr(obj, noisy_bg, inside) / 2 + psnr(obj, dented, inside) / 2
    )


def test_psnr_region_errors_name_the_region():
    ref = torch.ones(8, 8)
    with pytest.raises(ValueError, match="region: expected a boolean mask"):
        psnr(ref, ref, np.ones((8, 8)))
    with pytest.raises(ValueError, match="region: expected a shape that broadcasts"):
        psnr(ref, ref, np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="region: expected at least one pixel"):
        psnr(ref, ref, np.zeros((8, 8), bool))
