"""A Gaussian test problem with an exact posterior: prior x ~ CN(mu, Sigma) on a small complex image,
y = A x + n for an undersampled multi-coil SENSE operator A and complex noise n (std ``noise_sigma``
per real channel), posterior CN(m, C) with C^-1 = Sigma^-1 + A^H A / (2 noise_sigma^2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffusion_core.denoiser import GaussianDenoiser
from diffusion_core.fft import fft2c
from diffusion_core.operators import sense_operator

C128 = torch.complex128


@dataclass
class GaussianProblem:
    prior: GaussianDenoiser
    maps: torch.Tensor  # (c, H, W)
    mask: torch.Tensor  # (H, W)
    kspace: torch.Tensor  # (c, H, W), zero where not sampled
    noise_sigma: float
    truth: torch.Tensor  # (H, W), the image that was measured
    post_mean: torch.Tensor  # (H, W)
    post_cov: torch.Tensor  # (H*W, H*W)

    @property
    def post_var(self) -> torch.Tensor:
        return self.post_cov.diagonal().real.reshape(self.truth.shape)


def _dense(apply, n: int, shape: tuple[int, int]) -> torch.Tensor:
    """Matrix (out, n) of a linear map on (H, W) images."""
    eye = torch.eye(n, dtype=C128).reshape(n, *shape)
    return apply(eye).reshape(n, -1).T


def smooth_maps(coils: int, shape: tuple[int, int]) -> torch.Tensor:
    """Smooth complex coil maps normalised to sum_c |S_c|^2 = 1."""
    h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    maps = []
    for c in range(coils):
        ang = 2 * torch.pi * c / coils
        cy, cx = 1.2 * torch.sin(torch.tensor(ang)), 1.2 * torch.cos(torch.tensor(ang))
        mag = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0)
        maps.append(mag * torch.exp(1j * (ang + 0.5 * (xx + yy))))
    s = torch.stack(maps).to(C128)
    return s / s.abs().pow(2).sum(0).sqrt()


def smooth_circulant_prior(shape: tuple[int, int]) -> GaussianDenoiser:
    """Zero-mean circulant Gaussian prior with a smooth (Lorentzian) spectrum, complex64: the
    reconstruct tests' prior."""
    h, w = shape
    ky, kx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    spec = 1.0 / (1.0 + (ky**2 + kx**2).float() / 3.0)
    return GaussianDenoiser.circulant(
        torch.zeros(shape, dtype=torch.complex64), spec * (h * w) / spec.sum() * 0.2
    )


def make_problem(
    kind: str = "diagonal",
    shape: tuple[int, int] = (16, 16),
    coils: int = 4,
    noise_sigma: float = 0.1,
    seed: int = 0,
    mask: torch.Tensor | None = None,
) -> GaussianProblem:
    g = torch.Generator().manual_seed(seed)
    h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    mu = (0.5 * torch.exp(-(xx**2 + yy**2)) * torch.exp(1j * 0.3 * xx)).to(C128)
    if kind == "diagonal":
        var = (0.3 + 0.7 * torch.rand(shape, generator=g, dtype=torch.float64)) ** 2
        prior = GaussianDenoiser.diagonal(mu, var)
    else:
        ky, kx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
        spec = 1.0 / (1.0 + (ky**2 + kx**2).double() / 4.0)
        prior = GaussianDenoiser.circulant(mu, spec * (h * w) / spec.sum() * 0.3)
    if mask is None:
        mask = torch.zeros(shape, dtype=torch.float64)
        mask[:, ::3] = 1
        mask[:, w // 2 - 2 : w // 2 + 2] = 1
    maps = smooth_maps(coils, shape)
    op = sense_operator(maps, mask)
    truth = prior.sample((), g)
    noise = torch.complex(
        torch.randn((coils, *shape), generator=g, dtype=torch.float64),
        torch.randn((coils, *shape), generator=g, dtype=torch.float64),
    )
    kspace = op(truth) + noise_sigma * noise * mask
    n = h * w
    a = _dense(op, n, shape)
    if prior.fourier:
        f = _dense(fft2c, n, shape)
        sigma_inv = f.conj().T @ torch.diag((1 / prior.variance).reshape(-1).to(C128)) @ f
    else:
        sigma_inv = torch.diag((1 / prior.variance).reshape(-1).to(C128))
    prec = sigma_inv + a.conj().T @ a / (2 * noise_sigma**2)
    cov = torch.linalg.inv(prec)
    cov = 0.5 * (cov + cov.conj().T)
    rhs = sigma_inv @ mu.reshape(-1) + a.conj().T @ kspace.reshape(-1) / (2 * noise_sigma**2)
    mean = (cov @ rhs).reshape(shape)
    return GaussianProblem(prior, maps, mask, kspace, noise_sigma, truth, mean, cov)


@dataclass
class RestrictedPosterior:
    """The exact posterior of a :class:`GaussianProblem` given also x = 0 outside ``support``:
    with P = Sigma^-1 + A^H A / (2 s^2) and b = Sigma^-1 mu + A^H y / (2 s^2), x on the support is
    CN(P_ss^-1 b_s, P_ss^-1) (the conditional of the unrestricted posterior), zero elsewhere."""

    support: torch.Tensor  # (H, W) bool
    mean: torch.Tensor  # (H, W), zero outside the support
    cov: torch.Tensor  # (n_s, n_s) over the support's pixels in row-major order


def restricted_posterior(p: GaussianProblem, support: torch.Tensor) -> RestrictedPosterior:
    inside = support.reshape(-1)
    prec = torch.linalg.inv(p.post_cov)  # P
    rhs = prec @ p.post_mean.reshape(-1)  # b = P m
    prec_s = prec[inside][:, inside]
    cov = torch.linalg.inv(prec_s)
    cov = 0.5 * (cov + cov.conj().T)
    mean = torch.zeros_like(p.post_mean).reshape(-1)
    mean[inside] = cov @ rhs[inside]
    return RestrictedPosterior(support, mean.reshape(p.post_mean.shape), cov)
