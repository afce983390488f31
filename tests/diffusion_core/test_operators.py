import numpy as np
import torch
from complex_checks import assert_adjoint, random_complex

from diffusion_core.fft import fft2c, ifft2c
from diffusion_core.linalg import conjugate_gradient
from diffusion_core.operators import FourierOp, MaskOp, SensitivityOp, sense_operator


def test_fft_matches_numpy_centred_orthonormal():
    g = torch.Generator().manual_seed(1)
    x = random_complex((3, 12, 10), g)
    ref = np.fft.fftshift(
        np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    np.testing.assert_allclose(fft2c(x).numpy(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ifft2c(fft2c(x)), x, rtol=1e-5, atol=1e-5)


def test_fft_odd_sizes_roundtrip_and_energy():
    g = torch.Generator().manual_seed(2)
    x = random_complex((7, 9), g)
    torch.testing.assert_close(ifft2c(fft2c(x)), x, rtol=1e-5, atol=1e-5)
    assert torch.allclose(fft2c(x).abs().square().sum(), x.abs().square().sum(), rtol=1e-5)


def test_every_operator_is_adjoint():
    g = torch.Generator().manual_seed(3)
    maps = random_complex((2, 4, 8, 6), g).to(torch.complex128)
    mask = (torch.rand(8, 6, generator=g) > 0.5).double()
    assert_adjoint(FourierOp(), FourierOp().adjoint, (2, 8, 6))
    assert_adjoint(MaskOp(mask), MaskOp(mask).adjoint, (2, 4, 8, 6))
    assert_adjoint(SensitivityOp(maps), SensitivityOp(maps).adjoint, (2, 8, 6))
    a = sense_operator(maps, mask)
    assert_adjoint(a, a.adjoint, (2, 8, 6))


def test_sense_matches_numpy_and_normal():
    g = torch.Generator().manual_seed(4)
    maps = random_complex((4, 8, 6), g)
    mask = (torch.rand(8, 6, generator=g) > 0.5).float()
    x = random_complex((8, 6), g)
    a = sense_operator(maps, mask)
    coil = maps.numpy() * x.numpy()[None]
    ref = mask.numpy() * np.fft.fftshift(
        np.fft.fft2(np.fft.ifftshift(coil, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    np.testing.assert_allclose(a(x).numpy(), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.normal(x), a.adjoint(a(x)))


def test_conjugate_gradient_solves_tikhonov_sense():
    g = torch.Generator().manual_seed(5)
    maps = random_complex((2, 3, 6, 5), g).to(torch.complex128)
    mask = (torch.rand(6, 5, generator=g) > 0.4).double()
    a = sense_operator(maps, mask)
    x_true = random_complex((2, 6, 5), g).to(torch.complex128)
    lam = 0.1
    rhs = a.adjoint(a(x_true)) + lam * x_true
    x = conjugate_gradient(lambda v: a.normal(v) + lam * v, rhs, max_iter=200, tol=1e-12)
    torch.testing.assert_close(x, x_true, rtol=1e-6, atol=1e-6)
