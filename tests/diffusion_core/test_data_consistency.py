"""Data-consistency objects: same operator as sense_operator, prox optimality, projection, noised y."""

from __future__ import annotations

import math

import pytest
import torch
from complex_checks import random_complex
from gaussian_problem import smooth_maps

from diffusion_core.data_consistency import CoilDataConsistency, SenseDataConsistency
from diffusion_core.fft import fft2c
from diffusion_core.operators import sense_operator

SHAPE = (12, 10)
C128 = torch.complex128


def _setup(noise: float = 0.1, cg: int = 60, coils: int = 3, step: int = 2):
    g = torch.Generator().manual_seed(0)
    maps = smooth_maps(coils, SHAPE)
    mask = torch.zeros(SHAPE, dtype=torch.float64)
    mask[:, ::step] = 1
    mask[:, 5] = 1
    y = sense_operator(maps, mask)(random_complex(SHAPE, g).to(C128))
    return SenseDataConsistency(maps, mask, y, noise, cg_iters=cg), maps, mask, y, g


def test_residual_matches_sense_operator() -> None:
    dc, maps, mask, y, g = _setup()
    x = random_complex((2, *SHAPE), g).to(C128)
    expect = (sense_operator(maps, mask)(x) - y).abs().pow(2).sum((-3, -2, -1)).sqrt()
    torch.testing.assert_close(dc.residual_norm(x), expect)


def test_prox_is_the_minimiser() -> None:
    dc, maps, mask, y, g = _setup()
    a = sense_operator(maps, mask)
    v = random_complex((2, *SHAPE), g).to(C128)
    z = dc.prox(v, 3.0)
    grad = (z - v) + 3.0 * a.adjoint(a(z) - y)  # gradient of the prox objective
    assert float(grad.abs().max()) < 1e-8 * float(v.abs().max())


def test_projection_is_consistent_and_closest() -> None:
    dc, maps, mask, y, g = _setup(
        noise=0.0, coils=2, step=4
    )  # 2 coils x 4/10 columns: a null space
    assert math.isinf(dc.weight(1.0))
    v = random_complex((2, *SHAPE), g).to(C128)
    z = dc.prox(v, dc.weight(1.0))
    assert float(dc.residual_norm(z).max()) < 1e-8 * float(y.norm())
    # the move z - v lies in range(A^H), orthogonal to the null space of A: z is the closest
    null = dc.prox(random_complex(SHAPE, g).to(C128), math.inf, torch.zeros_like(dc.y))
    assert float(sense_operator(maps, mask)(null).abs().max()) < 1e-8 < float(null.abs().max())
    overlap = torch.vdot((z - v)[0].flatten(), null.flatten()).abs()
    assert float(overlap) < 1e-8 * float((z - v)[0].norm() * null.norm())


def test_noised_measurement_statistics() -> None:
    dc, maps, mask, _y, g = _setup()
    like = torch.zeros(4000, *SHAPE, dtype=C128)
    ys = dc.noised(0.5, like, g)
    # y_sigma - y = 0.5 A z: per-entry variance 2 * 0.25 * sum_c |S_c|^2-weighted -> compare with A A^H
    emp = (ys - dc.y).abs().pow(2).mean(0).sum()
    expect = 2 * 0.25 * float(mask.sum()) * float(maps.abs().pow(2).sum()) / maps[0].numel()
    assert math.isclose(float(emp), expect, rel_tol=0.05)


def test_coil_prox_mixes_sampled_kspace_only() -> None:
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(SHAPE)
    mask[:, ::3] = 1
    y = random_complex((2, *SHAPE), g) * mask
    dc = CoilDataConsistency(mask, y, 0.1)
    v = random_complex((2, *SHAPE), g)
    z = dc.prox(v, 1.0)  # weight 1: halfway between v and y on sampled entries
    torch.testing.assert_close(
        fft2c(z), fft2c(v) + mask * 0.5 * (y - fft2c(v)), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(fft2c(dc.prox(v, math.inf)) * mask, y, rtol=1e-5, atol=1e-5)


def test_bad_inputs() -> None:
    y = torch.zeros(2, *SHAPE, dtype=torch.complex64)
    with pytest.raises(ValueError, match="no sampled"):
        CoilDataConsistency(torch.zeros(SHAPE), y, 0.1)
    with pytest.raises(ValueError, match="noise_sigma"):
        CoilDataConsistency(torch.ones(SHAPE), y, -1.0)
    with pytest.raises(ValueError, match="mask"):
        CoilDataConsistency(torch.ones(3, 3), y, 0.1)


def test_coil_prox_with_a_support_is_the_constrained_minimiser() -> None:
    g = torch.Generator().manual_seed(2)
    mask = torch.zeros(SHAPE, dtype=torch.float64)
    mask[:, ::2] = 1
    support = torch.zeros(SHAPE, dtype=torch.bool)
    support[2:10, 1:8] = True
    y = random_complex((2, *SHAPE), g).to(C128) * mask
    dc = CoilDataConsistency(mask, y, 0.1, support, cg_iters=80)
    v = random_complex((2, *SHAPE), g).to(C128)
    z = dc.prox(v, 3.0)
    assert float(z[:, ~support].abs().max()) == 0.0
    # on the support the gradient of ||z - v||^2 / 2 + 3 / 2 ||M F z - y||^2 vanishes
    grad = (z - v) + 3.0 * torch.fft.ifftshift(
        torch.fft.ifft2(torch.fft.fftshift(mask * fft2c(z) - y, dim=(-2, -1)), norm="ortho"),
        dim=(-2, -1),
    )
    assert float(grad[:, support].abs().max()) < 1e-8
