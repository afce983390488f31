"""Calibration cases from fully sampled images: simulated coils, noise and a mask, truth known.

A user's fully sampled slice (from a volume or a coil-combined raw file, as training reads them)
becomes a multi-coil measurement: smooth random phase, ``coils`` simulated surface-coil maps
(Gaussian profiles centred on a circle around the field of view, each with a linear phase,
normalised to unit root-sum-of-squares so that their SENSE combination is the image), centred
Fourier transform, complex noise of ``noise`` per real channel (in units of the image's 99th
magnitude percentile, which is 1 here), and the mask. Masks are named ``KIND:R`` with KIND one of
``random`` / ``equispaced`` (1D columns with an ACS block of 8 % of the columns, at least 8) or
``poisson`` (2D, a calibration square of 12 % of the smaller side, at least 12).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffusion_core.fft import fft2c
from diffusion_core.masks import equispaced_columns_mask, poisson_disc_mask, random_columns_mask
from diffusion_core.noise import complex_noise
from diffusion_core.normalization import magnitude_scale

MASK_KINDS = ("random", "equispaced", "poisson")


@dataclass(frozen=True)
class MaskSpec:
    """A mask kind (:data:`MASK_KINDS`) and acceleration R > 1."""

    kind: str
    acceleration: float

    @classmethod
    def parse(cls, text: str) -> MaskSpec:
        kind, _, r = text.partition(":")
        try:
            spec = cls(kind, float(r))
        except ValueError:
            spec = None
        if spec is None or kind not in MASK_KINDS or not spec.acceleration > 1:
            raise ValueError(
                f"mask {text!r}: expected KIND:R with KIND one of {MASK_KINDS} and R > 1, "
                "e.g. random:4"
            )
        return spec

    def make(self, shape: tuple[int, int], seed: int) -> torch.Tensor:
        nx = shape[1]
        if self.kind == "poisson":
            return poisson_disc_mask(
                shape, self.acceleration, max(12, round(0.12 * min(shape))), seed
            )
        acs = max(8, round(0.08 * nx))
        if self.kind == "random":
            return random_columns_mask(shape, self.acceleration, acs, seed)
        return equispaced_columns_mask(shape, self.acceleration, acs)

    def label(self) -> str:
        return f"{self.kind}:{self.acceleration:g}"


def simulated_maps(shape: tuple[int, int], coils: int, generator: torch.Generator) -> torch.Tensor:
    """(coils, y, x) complex64 smooth surface-coil maps with unit root-sum-of-squares."""
    ny, nx = shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, ny), torch.linspace(-1, 1, nx), indexing="ij")
    turn = float(torch.rand((), generator=generator)) * 2 * math.pi
    maps = []
    for c in range(coils):
        ang = turn + 2 * math.pi * c / coils
        cy, cx = 1.3 * math.sin(ang), 1.3 * math.cos(ang)
        mag = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 1.2)
        maps.append(torch.polar(mag, ang + 0.6 * (yy * math.cos(ang) - xx * math.sin(ang))))
    stack = torch.stack(maps)
    return (stack / stack.abs().pow(2).sum(0).sqrt()).to(torch.complex64)


def simulated_measurement(
    image: torch.Tensor, coils: int, noise: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(kspace (coils, ky, kx) fully sampled with noise, truth (y, x) complex64) from a real or
    complex image (y, x); the truth is scaled to a 99th magnitude percentile of 1 and, if the image
    is real, given a smooth random phase."""
    from diffusion_core.training.data import smooth_random_phase

    img = image.to(torch.complex64) if image.is_complex() else image.float()
    img = img / magnitude_scale(img)
    if not image.is_complex():
        phase = smooth_random_phase(1, (img.shape[-2], img.shape[-1]), 4, 1.0, generator)[0]
        img = torch.polar(img, phase)
    truth = img.to(torch.complex64)
    maps = simulated_maps((truth.shape[-2], truth.shape[-1]), coils, generator)
    clean = fft2c(maps * truth)
    return clean + noise * complex_noise(clean, generator), truth
