"""A tiny stand-in for the diffusion reconstructor where the network is not the point: the
root-sum-of-squares of the zero-filled coil images, and records the slices it was given."""

from __future__ import annotations

import torch

from diffusion_core.fft import ifft2c
from diffusion_core.reconstruct import Reconstruction
from gadget.assembly import AssembledSlice


class ZeroFilledRss:
    """``replay(..., reconstructor=ZeroFilledRss())``: mean = RSS of the zero-filled coil images,
    std = a tenth of it; every slice seen is kept in ``seen``."""

    def __init__(self) -> None:
        self.seen: list[AssembledSlice] = []

    def __call__(self, assembled: AssembledSlice) -> Reconstruction:
        self.seen.append(assembled)
        rss = ifft2c(assembled.kspace).abs().square().sum(0).sqrt()
        mean = rss.to(torch.complex64)
        return Reconstruction(
            mean=mean,
            std=rss / 10,
            samples=mean[None],
            maps=torch.ones_like(assembled.kspace),
            scale=1.0,
            noise_sigma=0.0,
            support=torch.ones(mean.shape, dtype=torch.bool),
        )
