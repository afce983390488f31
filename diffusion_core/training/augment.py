"""Strong training augmentation: geometry, contrast, bias field, empty backgrounds, phase kinds.

The shipped prior saw random crops of 1 mm slices with flips, gamma and a smooth phase; the
product meets heads at other pixel sizes, positions, FOVs and contrasts. With an
:class:`AugmentConfig` in :class:`~diffusion_core.training.data.DataConfig`, a batch is made here
instead, with batched torch ops on the target device:

1. geometry: each slice is centred on a zero canvas and one ``grid_sample`` (bicubic) per batch
   reads the crop through a random affine map: zoom (FOV: > 1 makes the head larger, so the crop
   cuts it: partial heads), pixel aspect, rotation, the flips/transpose and a shift that lets the
   head leave the crop by ``shift`` of its width;
2. a random monotone piecewise-linear contrast curve of the magnitude (pixel order is kept);
3. a smooth positive multiplicative bias field (a coil-shading stand-in) within
   ``[1 / bias_max, bias_max]``;
4. the gamma and scale jitter of ``DataConfig``;
5. a phase of one of three kinds: smooth low-order (``DataConfig.phase_grid/phase_std``), a linear
   ramp (an off-centre echo / shifted k-space), near-constant;
6. a fraction ``empty_prob`` of samples replaced by an empty background: complex Gaussian noise.

All random numbers come from one CPU generator, in a fixed order, so a seed reproduces a batch
whatever the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the augmentation (see the module docstring for the order they are applied in).

    zoom_range: log-uniform isotropic zoom (output pixels per source pixel).
    aspect_range: log-uniform ratio of the y to the x zoom (anisotropic pixels / FOV).
    rotation_deg: uniform rotation in +-rotation_deg (45 with the 8 flips/transposes: any angle).
    shift: how far (fraction of the crop's footprint) the head may leave the crop.
    contrast_prob, contrast_pieces, contrast_std: probability of a random monotone curve, its
    number of linear pieces on [0, 1] and the log-std of their slopes.
    bias_prob, bias_grid, bias_max: probability of a bias field, the side of its coarse grid and
    its bound (the field lies within [1 / bias_max, bias_max]).
    empty_prob, empty_noise: fraction of empty-background samples and the range of their noise
    standard deviation per real channel (the images' 99th percentile is about 1).
    phase_weights: relative frequency of the smooth, ramp and near-constant phase kinds.
    ramp_cycles: largest ramp, in cycles across the crop, per axis.
    constant_std: standard deviation (radians) of the small smooth field of the near-constant kind.
    """

    zoom_range: tuple[float, float] = (0.6, 1.5)
    aspect_range: tuple[float, float] = (0.85, 1.18)
    rotation_deg: float = 45.0
    shift: float = 0.15
    contrast_prob: float = 0.7
    contrast_pieces: int = 6
    contrast_std: float = 0.5
    bias_prob: float = 0.7
    bias_grid: int = 3
    bias_max: float = 1.6
    empty_prob: float = 0.03
    empty_noise: tuple[float, float] = (0.0, 0.05)
    phase_weights: tuple[float, float, float] = (0.5, 0.25, 0.25)
    ramp_cycles: float = 3.0
    constant_std: float = 0.1

    def __post_init__(self) -> None:
        for name in ("zoom_range", "aspect_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"AugmentConfig.{name}: expected 0 < low <= high, got {(lo, hi)}")
        lo, hi = self.empty_noise
        if not 0 <= lo <= hi:
            raise ValueError(
                f"AugmentConfig.empty_noise: expected 0 <= low <= high, got {(lo, hi)}"
            )
        for name in ("contrast_prob", "bias_prob", "empty_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(
                    f"AugmentConfig.{name}: expected in [0, 1], got {getattr(self, name)}"
                )
        for name in ("rotation_deg", "shift", "contrast_std", "ramp_cycles", "constant_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentConfig.{name}: expected >= 0, got {getattr(self, name)}")
        if self.contrast_pieces < 1 or self.bias_grid < 1:
            raise ValueError(
                "AugmentConfig.contrast_pieces and bias_grid: expected >= 1, got "
                f"{self.contrast_pieces}, {self.bias_grid}"
            )
        if self.bias_max < 1:
            raise ValueError(f"AugmentConfig.bias_max: expected >= 1, got {self.bias_max}")
        weights = self.phase_weights
        if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(
                "AugmentConfig.phase_weights: expected 3 weights >= 0 with a positive sum, "
                f"got {weights}"
            )


def _log_uniform(n: int, bounds: tuple[float, float], g: torch.Generator) -> torch.Tensor:
    lo, hi = bounds
    return lo * (hi / lo) ** torch.rand(n, generator=g, dtype=torch.float64)


def centred_canvas(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(canvas (B, C, S, S) float32, sizes (B, 2) of each image): every image (y, x) centred on a
    zero square of side S = the largest side; C = 1 for real images, 2 (real, imag) if any is
    complex."""
    side = max(max(im.shape) for im in images)
    complex_input = any(im.is_complex() for im in images)
    canvas = torch.zeros((len(images), 2 if complex_input else 1, side, side))
    for b, im in enumerate(images):
        ny, nx = im.shape
        y0, x0 = (side - ny) // 2, (side - nx) // 2
        parts = (
            torch.view_as_real(im.to(torch.complex64)).permute(2, 0, 1)
            if complex_input
            else im[None]
        )
        canvas[b, :, y0 : y0 + ny, x0 : x0 + nx] = parts
    sizes = torch.tensor([tuple(im.shape) for im in images], dtype=torch.float64)
    return canvas, sizes


def crop_grid(
    sizes: torch.Tensor,
    side: int,
    crop: int,
    config: AugmentConfig,
    flips: torch.Tensor,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Sampling grid (B, crop, crop, 2) for ``grid_sample(align_corners=True)`` on a canvas of
    ``side``, float32 on ``device`` (the per-sample maps are drawn on the CPU, the grid is made
    on ``device`` in float64: an exact window needs coordinates exact to 1e-5 pixel).

    Output pixel u (centred crop coordinates) reads canvas point P + R F Z^-1 u: Z = diag(zoom_y,
    zoom_x), F the flips (``flips[:, 0]``: y, ``[:, 1]``: x) and transpose (``[:, 2]``), R the
    rotation; the centre P is the image's centre plus a shift uniform in the range that lets the
    (unrotated) crop run over the image (image larger than the footprint) or the image over the
    crop (smaller), widened by ``config.shift`` of the footprint. P is snapped so that at zoom 1
    and no rotation the crop is an exact window of the image (no interpolation blur). Zooms below
    1 are not antialiased (at most 1 / 0.6 by default: mild aliasing of the finest detail).
    """
    b = sizes.shape[0]
    g = generator
    zoom = _log_uniform(b, config.zoom_range, g)
    aspect = _log_uniform(b, config.aspect_range, g)
    theta = (2 * torch.rand(b, generator=g, dtype=torch.float64) - 1) * math.radians(
        config.rotation_deg
    )
    unit_shift = 2 * torch.rand((b, 2), generator=g, dtype=torch.float64) - 1
    zy, zx = zoom * aspect.sqrt(), zoom / aspect.sqrt()
    footprint = crop / torch.stack([zy, zx], dim=1)  # canvas pixels covered per output axis
    transpose = flips[:, 2].to(torch.float64)
    oriented = torch.stack(  # image sides along the output axes
        [
            sizes[:, 0] * (1 - transpose) + sizes[:, 1] * transpose,
            sizes[:, 1] * (1 - transpose) + sizes[:, 0] * transpose,
        ],
        dim=1,
    )
    reach = (oriented - footprint).abs() / 2 + config.shift * footprint
    signs = 1 - 2 * flips[:, :2].to(torch.float64)  # (B, 2): -1 where flipped
    eye, swap = torch.eye(2, dtype=torch.float64), torch.tensor([[0.0, 1.0], [1.0, 0.0]]).double()
    flip_matrix = signs[:, :, None] * torch.where(flips[:, 2, None, None], swap, eye)
    cos, sin = theta.cos(), theta.sin()
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    linear = rotation @ flip_matrix / torch.stack([zy, zx], dim=1)[:, None, :]  # R F Z^-1
    half = (crop - 1) / 2
    centre = (side - sizes) // 2 + (sizes - 1) / 2  # image centre on the canvas (y, x)
    centre = centre + (flip_matrix @ (reach * unit_shift)[:, :, None])[:, :, 0]  # box to box
    centre = torch.round(centre - half) + half
    linear, centre = linear.to(device), centre.to(device)
    axis = torch.arange(crop, dtype=torch.float64, device=device) - half
    uy, ux = axis[None, :, None, None], axis[None, None, :, None]  # output (y, x)
    points = (
        centre[:, None, None, :]
        + uy * linear[:, None, None, :, 0]
        + ux * linear[:, None, None, :, 1]
    )
    normalised = points * (2 / max(side - 1, 1)) - 1
    return normalised.flip(-1).float()  # grid_sample wants (x, y)


def random_monotone_curves(
    batch: int, pieces: int, std: float, prob: float, generator: torch.Generator
) -> torch.Tensor:
    """Slopes (batch, pieces) float32 of piecewise-linear curves on [0, 1] with f(0) = 0, f(1) = 1:
    log-normal (``std``) normalised to mean 1; the identity (all 1) where not drawn
    (1 - ``prob``)."""
    slopes = (torch.randn((batch, pieces), generator=generator) * std).exp()
    slopes = slopes / slopes.mean(dim=1, keepdim=True)
    apply = torch.rand((batch, 1), generator=generator) < prob
    return torch.where(apply, slopes, torch.ones_like(slopes))


def apply_monotone_curve(magnitude: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    """f(magnitude) per sample: magnitude (B, H, W) >= 0, slopes (B, K) > 0 of the K pieces on
    [0, 1]; above 1 the last piece continues. Strictly increasing, so pixel order is kept."""
    k = slopes.shape[1]
    slopes = slopes.to(magnitude)
    knots = F.pad(torch.cumsum(slopes, dim=1) / k, (1, 0))  # f at 0, 1/k, ..., 1
    t = magnitude.flatten(1) * k
    index = t.floor().clamp(0, k - 1).long()
    value = knots.gather(1, index) + (t - index) / k * slopes.gather(1, index)
    return value.view_as(magnitude)


def _smooth_fields(
    batch: int, shape: tuple[int, int], grid: int, g: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """(batch, y, x) on ``device``: standard normal (grid x grid) fields (drawn on the CPU)
    upsampled bicubically."""
    coarse = torch.randn((batch, 1, grid, grid), generator=g).to(device)
    return F.interpolate(coarse, size=shape, mode="bicubic", align_corners=True)[:, 0]


def smooth_bias_field(
    batch: int,
    shape: tuple[int, int],
    config: AugmentConfig,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Positive smooth fields (batch, y, x) float32 on ``device``: exp(a f / max|f|) with f a
    smooth random field and a uniform in [0, log bias_max], so every value lies in
    [1 / bias_max, bias_max]; 1 everywhere where not drawn (1 - ``bias_prob``)."""
    field = _smooth_fields(batch, shape, config.bias_grid, generator, device)
    peak = field.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    amount = torch.rand((batch, 1, 1), generator=generator) * math.log(config.bias_max)
    apply = torch.rand((batch, 1, 1), generator=generator) < config.bias_prob
    return torch.exp(torch.where(apply, amount, 0.0).to(device) * field / peak)


def random_phase_kinds(
    batch: int,
    shape: tuple[int, int],
    config: AugmentConfig,
    smooth_grid: int,
    smooth_std: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(phase (batch, y, x) float32 radians on ``device``, kind (batch,) on the CPU: 0 smooth,
    1 ramp, 2 near-constant); every kind has a uniform global phase in [0, 2 pi)."""
    g = generator
    weights = torch.tensor(config.phase_weights, dtype=torch.float64)
    kind = torch.multinomial(weights, batch, replacement=True, generator=g)
    offset = torch.rand((batch, 1, 1), generator=g) * (2 * math.pi)
    smooth = _smooth_fields(batch, shape, smooth_grid, g, device)
    cycles = (2 * torch.rand((batch, 2), generator=g) - 1) * config.ramp_cycles
    std = torch.tensor([smooth_std, 0.0, config.constant_std])[kind] * (kind != 1)
    cycles = cycles * (kind == 1)[:, None]  # a ramp only for kind 1
    cycles, std, offset = cycles.to(device), std.to(device), offset.to(device)
    y = torch.arange(shape[0], device=device) / shape[0]
    x = torch.arange(shape[1], device=device) / shape[1]
    ramp = 2 * math.pi * (cycles[:, 0, None, None] * y[:, None] + cycles[:, 1, None, None] * x)
    return smooth * std[:, None, None] + ramp + offset, kind


def empty_background(
    x: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """``x`` (B, H, W) complex with a fraction ``empty_prob`` of its samples replaced by complex
    Gaussian noise of a standard deviation per real channel uniform in ``empty_noise``."""
    b, shape = x.shape[0], x.shape[1:]
    empty = torch.rand(b, generator=generator) < config.empty_prob
    count = int(empty.sum())
    if count == 0:
        return x
    lo, hi = config.empty_noise
    std = lo + (hi - lo) * torch.rand((count, 1, 1), generator=generator)
    noise = (
        torch.complex(
            torch.randn((count, *shape), generator=generator),
            torch.randn((count, *shape), generator=generator),
        )
        * std
    )
    out = x.clone()
    out[empty.to(x.device)] = noise.to(x)
    return out


def augmented_crops(
    images: list[torch.Tensor],
    flips: torch.Tensor,
    crop: int,
    config: AugmentConfig,
    gamma_range: tuple[float, float],
    scale_range: tuple[float, float],
    phase_grid: int,
    phase_std: float,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """A batch (B, crop, crop) complex64 on ``device`` of augmented crops of ``images`` (each
    (y, x) float32 or complex64); ``flips`` (B, 3) bool as in ``sample_batch``."""
    b, shape, g = len(images), (crop, crop), generator
    canvas, sizes = centred_canvas(images)
    grid = crop_grid(sizes, canvas.shape[-1], crop, config, flips, g, device)
    sampled = F.grid_sample(
        canvas.to(device, non_blocking=True),
        grid,
        mode="bicubic",
        padding_mode="zeros",
        align_corners=True,
    )
    if sampled.shape[1] == 1:  # magnitude sources: bicubic undershoot is no phase
        magnitude, angle = sampled[:, 0].clamp_min(0), torch.zeros_like(sampled[:, 0])
    else:
        x = torch.complex(sampled[:, 0], sampled[:, 1])
        magnitude, angle = x.abs(), x.angle()
    slopes = random_monotone_curves(
        b, config.contrast_pieces, config.contrast_std, config.contrast_prob, g
    )
    magnitude = apply_monotone_curve(magnitude, slopes.to(device))
    magnitude = magnitude * smooth_bias_field(b, shape, config, g, device)
    lo, hi = gamma_range
    gamma = (lo * (hi / lo) ** torch.rand((b, 1, 1), generator=g)).to(device)
    lo, hi = scale_range
    scale = (lo + (hi - lo) * torch.rand((b, 1, 1), generator=g)).to(device)
    phase, _ = random_phase_kinds(b, shape, config, phase_grid, phase_std, g, device)
    x = torch.polar(magnitude.pow(gamma) * scale, angle + phase)
    return empty_background(x, config, g)
