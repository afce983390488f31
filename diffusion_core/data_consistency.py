"""Data consistency for y = A x + n, as objects the samplers use without knowing about MRI.

Measurement noise ``noise_sigma`` is the standard deviation per real channel of n (0 = noise-free).
Every object offers the same four operations on a batch of images ``x``:

* ``prox(v, weight, y=None)``: argmin_z ||z - v||^2 / 2 + weight / 2 ||A z - y||^2 (``weight = inf``:
  the projection onto {A z = y}); the k-space replacement / mixing of score-MRI and Song et al.
  2022 and the CG step of DDS are all of this form.
* ``weight(step)``: the weight that makes ``prox`` the implicit likelihood step matching a Langevin or
  diffusion step of size ``step`` (``step / noise_sigma^2``; infinite for noise-free data).
* ``residual_norm(x)``: ||A x - y|| per batch item, differentiable (DPS).
* ``noised(sigma, like, generator)``: y_sigma = y + sigma A z, the measurement of the noised image
  x_sigma = x + sigma z (Song, Shen, Xing, Ermon 2022).
* ``restrict(x)``: x set to zero outside the support (below).

The support. Where no coil sees the object (outside the support of the coil maps) the data say
nothing about the image, and a sampler would fill those pixels with whatever its prior imagines.
So the unknown image lives on a ``support`` (y, x): the forward model is A = M F S P with P the
restriction to it, and the constraint x = 0 outside it is part of the measurement, exact
(noise-free). Every ``prox`` returns images that are zero outside the support; its output is the
proximal map of the data term plus that constraint, so a sampler that uses ``prox`` (DDS, score-MRI,
Song et al.) samples p(x | y, x = 0 outside) and one that does not (DPS) calls ``restrict`` on its
clean estimate. For a Gaussian prior that posterior is the closed form with the precision matrix
restricted to the support (tests/diffusion_core/test_support.py).

:class:`SenseDataConsistency` acts on combined images (..., y, x) with A = M F S;
:class:`CoilDataConsistency` acts on coil images (..., c, y, x) with A = M F per coil (the per-coil
form of Chung & Ye 2022, combined afterwards by the square root of the sum of squares).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from diffusion_core.fft import fft2c, ifft2c
from diffusion_core.linalg import conjugate_gradient
from diffusion_core.noise import complex_noise


class DataConsistency(Protocol):
    """What a sampler may ask of the measurement."""

    def prox(
        self, v: torch.Tensor, weight: float, y: torch.Tensor | None = None
    ) -> torch.Tensor: ...

    def weight(self, step: float) -> float: ...

    def residual_norm(self, x: torch.Tensor) -> torch.Tensor: ...

    def noised(
        self, sigma: float, like: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor: ...

    def restrict(self, x: torch.Tensor) -> torch.Tensor: ...


def _check_inputs(kspace: torch.Tensor, mask: torch.Tensor, noise_sigma: float) -> None:
    if not kspace.is_complex():
        raise TypeError(f"kspace: expected complex (c, ky, kx), got dtype {kspace.dtype}")
    if mask.shape != kspace.shape[-2:]:
        raise ValueError(
            f"mask: expected shape {tuple(kspace.shape[-2:])} (ky, kx) like kspace, got {tuple(mask.shape)}"
        )
    if float(mask.sum()) == 0:
        raise ValueError("mask: has no sampled k-space entries; nothing to be consistent with")
    if not (noise_sigma >= 0 and math.isfinite(noise_sigma)):
        raise ValueError(f"noise_sigma: expected a finite value >= 0, got {noise_sigma}")


def image_support(maps: torch.Tensor, support: torch.Tensor | None = None) -> torch.Tensor:
    """Where the image may be non-zero: (y, x) bool, the pixels some coil sees (a non-zero map,
    maps (c, y, x)), within ``support`` (y, x) if given.

    Raises ``ValueError`` if ``support`` has the wrong shape, is empty, or no coil sees any of it.
    """
    seen = maps.abs().sum(-3) > 0
    if support is None:
        support = torch.ones_like(seen)
    elif support.shape != seen.shape or support.is_complex():
        raise ValueError(
            f"support: expected a (y, x) = {tuple(seen.shape)} boolean mask like the maps, got "
            f"{tuple(support.shape)} {support.dtype}"
        )
    support = support.to(seen.device) != 0
    if not bool(support.any()):
        raise ValueError("support: is empty; expected at least one pixel of the object")
    if not bool((support & seen).any()):
        raise ValueError(
            "support: no coil sees any of its pixels (the coil maps are zero there); "
            "expected coil maps that are non-zero on the object"
        )
    return support & seen


class _Base:
    noise_sigma: float
    y: torch.Tensor
    cg_iters: int

    def weight(self, step: float) -> float:
        return math.inf if self.noise_sigma == 0 else step / self.noise_sigma**2

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _adjoint(self, k: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _restricted_prox(
        self, v: torch.Tensor, weight: float, y: torch.Tensor, image_ndim: int
    ) -> torch.Tensor:
        """The prox for A = M F S P by ``cg_iters`` CG iterations (v already zero outside the
        support; A^H maps into the support, so every iterate stays there)."""
        if math.isinf(weight):
            w = conjugate_gradient(
                lambda u: self._forward(self._adjoint(u)),
                y - self._forward(v),
                max_iter=self.cg_iters,
                ndim=3,
            )
            return v + self._adjoint(w)
        # solve for the correction d = z - v: (I + w A^H A) d = w A^H (y - A v), started at 0
        rhs = weight * self._adjoint(y - self._forward(v))
        d = conjugate_gradient(
            lambda u: u + weight * self._adjoint(self._forward(u)),
            rhs,
            max_iter=self.cg_iters,
            ndim=image_ndim,
        )
        return v + d


def _shift(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.ifftshift(x, dim=(-2, -1))


def _unshift(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(x, dim=(-2, -1))


class SenseDataConsistency(_Base):
    """SENSE measurement of combined images: A = M F S, maps (c, y, x), kspace (c, ky, kx), mask (ky, kx).

    ``support`` (y, x) bool: where the image may be non-zero, within the pixels a coil sees
    (:func:`image_support`); default: those pixels.
    ``prox`` is solved by ``cg_iters`` conjugate-gradient iterations (in image space for finite
    weights, in k-space on (A A^H) w = y - A v for the projection). Internally everything lives in
    FFT order (``ifftshift`` applied once to maps, mask, data and the images entering ``prox``), so
    the CG iterations use plain FFTs without shifts; a measurement from :meth:`noised` is in that
    internal order and is only meant to be handed back to :meth:`prox`.
    """

    def __init__(
        self,
        maps: torch.Tensor,
        mask: torch.Tensor,
        kspace: torch.Tensor,
        noise_sigma: float,
        cg_iters: int = 10,
        support: torch.Tensor | None = None,
        second: torch.Tensor | None = None,
        second_std: float = 0.5,
    ) -> None:
        _check_inputs(kspace, mask, noise_sigma)
        for name, m in (("maps", maps), ("second", second)):
            if m is not None and m.shape != kspace.shape:
                raise ValueError(
                    f"{name}: expected shape {tuple(kspace.shape)} like kspace, got {tuple(m.shape)}"
                )
        if cg_iters < 1:
            raise ValueError(f"cg_iters: expected >= 1, got {cg_iters}")
        if not second_std > 0:
            raise ValueError(f"second_std: expected > 0, got {second_std}")
        self.support = image_support(maps, support)
        self._inside = _shift(self.support.to(kspace.real.dtype))
        self.maps = _shift(maps) * self._inside
        self.mask = _shift(mask.to(kspace.real.dtype)).unsqueeze(-3)
        self.y = _shift(kspace) * self.mask
        self.noise_sigma = float(noise_sigma)
        self.cg_iters = int(cg_iters)
        # soft SENSE's second image (two ESPIRiT map sets): x2 on the pixels the second set
        # covers within the support, a white Gaussian prior of ``second_std`` per real channel
        self.second = None if second is None else _shift(second) * self._inside
        self.second_std = float(second_std)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask * torch.fft.fft2(self.maps * x.unsqueeze(-3), norm="ortho")

    def _adjoint(self, k: torch.Tensor) -> torch.Tensor:
        return (self.maps.conj() * torch.fft.ifft2(self.mask * k, norm="ortho")).sum(-3)

    def prox(self, v: torch.Tensor, weight: float, y: torch.Tensor | None = None) -> torch.Tensor:
        y = self.y if y is None else y
        if self.second is not None:
            return _unshift(self._two_set_prox(_shift(v) * self._inside, weight, y)[..., 0, :, :])
        return _unshift(self._restricted_prox(_shift(v) * self._inside, weight, y, 2))

    def restrict(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.support

    # soft SENSE: the unknown is (x1, x2), A = M F [S1 S2]; the samplers see x1, its prior the
    # denoiser's, and x2 is solved for with it in every prox (its prior N(0, second_std^2))
    def _forward2(self, u: torch.Tensor) -> torch.Tensor:
        assert self.second is not None
        coil = self.maps * u[..., 0:1, :, :] + self.second * u[..., 1:2, :, :]
        return self.mask * torch.fft.fft2(coil, norm="ortho")

    def _adjoint2(self, k: torch.Tensor) -> torch.Tensor:
        assert self.second is not None
        coil = torch.fft.ifft2(self.mask * k, norm="ortho")
        return torch.stack(
            [(self.maps.conj() * coil).sum(-3), (self.second.conj() * coil).sum(-3)], dim=-3
        )

    def _two_set_prox(self, v: torch.Tensor, weight: float, y: torch.Tensor) -> torch.Tensor:
        """(..., 2, y, x) in FFT order: argmin over (z1, z2) of ||z1 - v||^2 / 2 + mu / 2
        ||z2||^2 + weight / 2 ||A1 z1 + A2 z2 - y||^2, mu = weight sigma^2 / second_std^2 (x2's
        prior precision on the scale of the x1 term); for weight = inf the least-norm
        correction (d1, z2) onto {A z = y}."""
        r = y - self._forward(v)
        if math.isinf(weight):
            w = conjugate_gradient(
                lambda q: self._forward2(self._adjoint2(q)), r, max_iter=self.cg_iters, ndim=3
            )
            u = self._adjoint2(w)
        else:
            mu = weight * self.noise_sigma**2 / self.second_std**2
            scale = torch.tensor([1.0, mu], dtype=v.real.dtype, device=v.device)[:, None, None]
            u = conjugate_gradient(
                lambda q: scale * q + weight * self._adjoint2(self._forward2(q)),
                weight * self._adjoint2(r),
                max_iter=self.cg_iters,
                ndim=3,
            )
        return torch.stack([v + u[..., 0, :, :], u[..., 1, :, :]], dim=-3)

    def second_image(self, x: torch.Tensor, iters: int = 30) -> torch.Tensor:
        """x2 (..., y, x) given x1 = ``x``: argmin ||A2 z2 - (y - A1 x)||^2 / (2 sigma^2) +
        ||z2||^2 / (2 second_std^2), by ``iters`` CG iterations (zeros without a second set)."""
        if self.second is None:
            return torch.zeros_like(x)
        second = self.second
        r = self.y - self._forward(_shift(x))

        def a2(z: torch.Tensor) -> torch.Tensor:
            return self.mask * torch.fft.fft2(second * z.unsqueeze(-3), norm="ortho")

        def a2h(k: torch.Tensor) -> torch.Tensor:
            return (second.conj() * torch.fft.ifft2(self.mask * k, norm="ortho")).sum(-3)

        ratio = (self.noise_sigma / self.second_std) ** 2
        z = conjugate_gradient(lambda q: ratio * q + a2h(a2(q)), a2h(r), max_iter=iters, ndim=2)
        return _unshift(z)

    def residual_norm(self, x: torch.Tensor) -> torch.Tensor:
        return (self._forward(_shift(x)) - self.y).abs().pow(2).sum(dim=(-3, -2, -1)).sqrt()

    def noised(
        self, sigma: float, like: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        # white noise is white in any pixel order, so no shift is needed for z
        return self.y + sigma * self._forward(complex_noise(like, generator))


class CoilDataConsistency(_Base):
    """Per-coil Cartesian measurement of coil images (..., c, y, x): A = M F P.

    Without a ``support`` (y, x) (P = I) everything is exact and diagonal in k-space (no CG); with
    one, ``prox`` takes ``cg_iters`` CG iterations, as the SENSE form does."""

    def __init__(
        self,
        mask: torch.Tensor,
        kspace: torch.Tensor,
        noise_sigma: float,
        support: torch.Tensor | None = None,
        cg_iters: int = 10,
    ) -> None:
        _check_inputs(kspace, mask, noise_sigma)
        if cg_iters < 1:
            raise ValueError(f"cg_iters: expected >= 1, got {cg_iters}")
        self.mask = mask.to(kspace.real.dtype)
        self.y = kspace * self.mask
        self.noise_sigma = float(noise_sigma)
        self.cg_iters = int(cg_iters)
        everywhere = torch.ones((1, *mask.shape), dtype=kspace.dtype, device=kspace.device)
        self.support = None if support is None else image_support(everywhere, support)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask * fft2c(self.restrict(x))

    def _adjoint(self, k: torch.Tensor) -> torch.Tensor:
        return self.restrict(ifft2c(self.mask * k))

    def restrict(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.support is None else x * self.support

    def prox(self, v: torch.Tensor, weight: float, y: torch.Tensor | None = None) -> torch.Tensor:
        y = self.y if y is None else y
        if self.support is not None:
            return self._restricted_prox(self.restrict(v), weight, y, 3)
        k = fft2c(v)
        if math.isinf(weight):
            mixed = k + self.mask * (y - k)
        else:
            mixed = k + self.mask * (weight / (1.0 + weight)) * (y - k)
        return ifft2c(mixed)

    def residual_norm(self, x: torch.Tensor) -> torch.Tensor:
        return (self.mask * fft2c(x) - self.y).abs().pow(2).sum(dim=(-3, -2, -1)).sqrt()

    def noised(
        self, sigma: float, like: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        return self.y + sigma * self.mask * fft2c(complex_noise(like, generator))
