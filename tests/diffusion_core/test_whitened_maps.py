"""Prewhitened data keep the image's shading: ESPIRiT maps of whitened k-space are returned in the
convention of unwhitened maps (unit root-sum-of-squares in the receivers' space), and maps given
with a noise covariance end up at the same scale as estimated ones.

Before: the maps of whitened data had unit norm in the whitened space, so the image was the
object times |W s|, shaded by the noise covariance's coil geometry (and by the error of a short
noise scan's estimate); given maps were whitened without renormalising, so the noise level the
samplers assume was off by the noise scale (0.72 instead of 0.015 of the image on a 14-coil case).
"""

from __future__ import annotations

import math

import torch
from complex_checks import random_complex
from gaussian_problem import smooth_circulant_prior, smooth_maps

from diffusion_core.denoiser import GaussianDenoiser
from diffusion_core.espirit import espirit_maps
from diffusion_core.fft import fft2c, ifft2c
from diffusion_core.noise import noise_covariance, prewhiten, prewhitening_matrix
from diffusion_core.reconstruct import ReconConfig, reconstruct, whitened_espirit_maps

C64 = torch.complex64
SHAPE = (64, 64)
COILS = 8
FAST = ReconConfig(sampler="dds", nfe=4, num_samples=2, cg_iters=3, sigma_max=20.0)


def _object() -> torch.Tensor:
    """A smooth elliptical object with an inner structure, real-valued, peak 1."""
    yy, xx = torch.meshgrid(
        torch.linspace(-1, 1, SHAPE[0]), torch.linspace(-1, 1, SHAPE[1]), indexing="ij"
    )
    head = ((yy / 0.8) ** 2 + (xx / 0.65) ** 2 < 1).float()
    inner = 0.5 * ((yy / 0.3) ** 2 + ((xx - 0.2) / 0.2) ** 2 < 1).float()
    return (head * (0.6 + 0.4 * torch.cos(3 * yy)) + inner).to(C64)


def _correlated_cov(seed: int) -> torch.Tensor:
    """A coil noise covariance with correlations and unequal channel noise (condition ~ 10-50)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(COILS, dtype=C64) + 0.25 * random_complex((COILS, COILS), g)
    gains = torch.exp(0.4 * torch.randn(COILS, generator=g)).to(C64)
    mix = torch.diag(gains) @ mix
    return 1e-4 * (mix @ mix.mH)


def _fully_sampled() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    truth = _object()
    maps = smooth_maps(COILS, SHAPE).to(C64)
    return truth, maps, fft2c(maps * truth)


def _least_squares(kspace: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Per-pixel SENSE of fully sampled k-space: m^H c / |m|^2 (zero where the maps are)."""
    coil = ifft2c(kspace)
    num = (maps.conj() * coil).sum(0)
    den = maps.abs().pow(2).sum(0)
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(num))


def _shading(image: torch.Tensor, truth: torch.Tensor) -> float:
    """Relative spread of |image| / |truth| over the object (0: no shading)."""
    inside = truth.abs() > 0.5
    ratio = image.abs()[inside] / truth.abs()[inside]
    return float(ratio.std() / ratio.mean())


def test_whitened_espirit_maps_do_not_shade_the_image() -> None:
    truth, _, kspace = _fully_sampled()
    w = prewhitening_matrix(_correlated_cov(1))
    white = prewhiten(kspace, w)
    ones = torch.ones(SHAPE)
    converted = whitened_espirit_maps(white, ones, w)
    unit_whitened = espirit_maps(white, ones)  # unit norm in the whitened space
    assert _shading(_least_squares(white, converted), truth) < 0.01  # 0.005 (ESPIRiT's own error)
    assert _shading(_least_squares(white, unit_whitened), truth) > 0.05  # 0.15
    # the maps, taken back to the receivers' space, have unit root-sum-of-squares
    raw = torch.linalg.solve(w, converted.reshape(COILS, -1)).reshape(converted.shape)
    rss = raw.abs().pow(2).sum(0).sqrt()
    seen = converted.abs().sum(0) > 0
    torch.testing.assert_close(rss[seen], torch.ones_like(rss[seen]), rtol=1e-4, atol=1e-4)


def test_short_white_noise_scan_shading_is_removed() -> None:
    """A 256-sample noise scan of white noise: its covariance estimate is off by about +-25 % in
    eigenvalue, which shades the image by 0.8-2 % (RMS) with maps of unit whitened norm; with the
    converted maps the shading stays under 0.05 %."""
    truth, _, kspace = _fully_sampled()
    g = torch.Generator().manual_seed(2)
    cov = noise_covariance(0.01 * random_complex((COILS, 256), g))
    w = prewhitening_matrix(cov)
    white = prewhiten(kspace, w)
    ones = torch.ones(SHAPE)
    assert _shading(_least_squares(white, whitened_espirit_maps(white, ones, w)), truth) < 0.002
    assert _shading(_least_squares(white, espirit_maps(white, ones)), truth) > 0.005


def _prior() -> GaussianDenoiser:
    return smooth_circulant_prior(SHAPE)


def _undersampled() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maps, 2x undersampled noisy k-space with correlated noise, its mask, the covariance."""
    _, maps, kspace = _fully_sampled()
    cov = _correlated_cov(3)
    g = torch.Generator().manual_seed(4)
    noise = torch.tensordot(
        torch.linalg.cholesky(cov), random_complex((COILS, *SHAPE), g), dims=([1], [0])
    )
    mask = torch.zeros(SHAPE)
    mask[:, ::2] = 1
    mask[:, 26:38] = 1
    return maps, (kspace + noise) * mask, mask, cov


def test_reconstruct_with_noise_cov_returns_unshaded_maps() -> None:
    _, kspace, mask, cov = _undersampled()
    r = reconstruct(kspace, mask, _prior(), FAST, noise_cov=cov, generator=torch.Generator())
    w = prewhitening_matrix(cov)
    raw = torch.linalg.solve(w, r.maps.reshape(COILS, -1)).reshape(r.maps.shape)
    rss = raw.abs().pow(2).sum(0).sqrt()[r.support]
    assert float(rss.std() / rss.mean()) < 1e-3  # one scale over the image: no shading
    norm = r.maps.abs().pow(2).sum(0).sqrt()[r.support]
    assert math.isclose(float(norm.median()), 1.0, rel_tol=1e-3)  # about unit norm
    assert math.isclose(r.noise_sigma * r.scale, 1 / math.sqrt(2), rel_tol=1e-6)


def test_given_maps_with_noise_cov_get_the_same_scale_as_estimated_ones() -> None:
    """The noise level relative to the image does not depend on where the maps came from."""
    maps, kspace, mask, cov = _undersampled()
    g = torch.Generator
    given = reconstruct(kspace, mask, _prior(), FAST, maps=maps, noise_cov=cov, generator=g())
    estimated = reconstruct(kspace, mask, _prior(), FAST, noise_cov=cov, generator=g())
    assert abs(math.log(given.noise_sigma / estimated.noise_sigma)) < 0.1
    assert math.isclose(given.scale, estimated.scale, rel_tol=0.1)
    # without the covariance the same data give a noise level in the receivers' units
    plain = reconstruct(kspace, mask, _prior(), FAST, maps=maps, generator=g())
    assert plain.noise_sigma > 0 and torch.isfinite(plain.mean).all()
