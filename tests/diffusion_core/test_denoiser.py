"""Denoiser wrapper (EDM preconditioning) and the exact Gaussian denoiser."""

from __future__ import annotations

import pytest
import torch
from complex_checks import random_complex

from diffusion_core.denoiser import (
    GaussianDenoiser,
    PreconditionedDenoiser,
    channels_to_complex,
    complex_to_channels,
)
from diffusion_core.networks import UNet, UNetConfig


class _Recorder(torch.nn.Module):
    """A fake network returning a constant and recording what it was given."""

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        self.x, self.c_noise = x, c_noise
        return torch.ones_like(x)


def test_edm_coefficients_applied() -> None:
    net = _Recorder()
    d = PreconditionedDenoiser(net, sigma_data=0.5)
    x = random_complex((2, 4, 6), torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.1, 3.0])
    out = d(x, sigma)
    total = sigma**2 + 0.25
    c_skip, c_out, c_in = 0.25 / total, sigma * 0.5 / total.sqrt(), 1 / total.sqrt()
    expect = c_skip[:, None, None] * x + c_out[:, None, None] * (1 + 1j)
    torch.testing.assert_close(out, expect)
    torch.testing.assert_close(net.c_noise, sigma.log() / 4)
    torch.testing.assert_close(channels_to_complex(net.x), x * c_in[:, None, None])
    torch.testing.assert_close(d.loss_weight(sigma), 1 / c_out**2)


def test_channel_conversion_roundtrip() -> None:
    x = random_complex((3, 5, 7), torch.Generator().manual_seed(1))
    ch = complex_to_channels(x)
    assert ch.shape == (3, 2, 5, 7)
    torch.testing.assert_close(ch[:, 1], x.imag)
    torch.testing.assert_close(channels_to_complex(ch), x)


def test_network_input_is_a_channels_last_view() -> None:
    """The layout the CPU convolutions are fastest with, at no copy (see complex_to_channels)."""
    x = random_complex((2, 6, 4), torch.Generator().manual_seed(3))
    ch = complex_to_channels(x)
    assert ch.is_contiguous(memory_format=torch.channels_last)
    assert ch.data_ptr() == torch.view_as_real(x).data_ptr()


def test_unet_denoiser_odd_size_float_and_bf16() -> None:
    cfg = UNetConfig(base_channels=8, channel_mult=(1, 2), attention_levels=(1,))
    net = UNet(cfg, generator=torch.Generator().manual_seed(0)).eval()
    x = random_complex((2, 9, 11), torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = PreconditionedDenoiser(net)(x, 0.7)
        low = PreconditionedDenoiser(net, autocast_bf16=True)(x, 0.7)
    assert ref.shape == x.shape and low.dtype == torch.complex64
    assert 0 < float((low - ref).norm() / ref.norm()) < 0.05


def test_sigma_validation() -> None:
    d = PreconditionedDenoiser(_Recorder())
    x = random_complex((2, 4, 4), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="sigma"):
        d(x, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="sigma"):
        d(x, 0.0)
    with pytest.raises(TypeError, match="complex"):
        d(x.real, 1.0)


@pytest.mark.parametrize("fourier", [False, True])
def test_gaussian_denoiser_is_the_posterior_mean(fourier: bool) -> None:
    """Monte-Carlo check of E[x0 | x] via the regression property: residual orthogonal to x."""
    g = torch.Generator().manual_seed(3)
    mean = random_complex((4, 4), g).to(torch.complex128)
    var = torch.rand(4, 4, generator=g, dtype=torch.float64) + 0.1
    den = GaussianDenoiser(mean, var, fourier=fourier)
    x0 = den.sample((20000,), g)
    sigma = 0.6
    x = x0 + sigma * random_complex(tuple(x0.shape), g).to(torch.complex128)
    resid = x0 - den(x, sigma)
    # E[resid] = 0 and E[resid * conj(x - mean)] = 0 for the exact conditional mean.
    se = resid.abs().std() / 20000**0.5
    assert resid.mean(0).abs().max() < 5 * se
    cross = (resid * (x - mean).conj()).mean(0).abs().max()
    assert cross < 5 * (resid.abs() * (x - mean).abs()).std() / 20000**0.5
    # and the prior sample covariance is as specified (per-coefficient variance in its basis)
    basis = den._to_basis(x0 - mean)
    torch.testing.assert_close(basis.abs().pow(2).mean(0), var, rtol=0.06, atol=0.0)
