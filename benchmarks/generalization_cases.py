"""Test cases for the generalization benchmark: fully sampled multi-coil k-space with a known truth.

A **volume case** (:func:`make_case`) is one 2D slice of a magnitude volume in
``../shared/data/train_volumes`` (read with :mod:`diffusion_core.training.volumes`, resampled to
1 mm isotropic), taken along any of the three axes at a fraction of the object's extent, then

1. placed in a field of view: a matrix (ny, nx) whose side covers ``fov_scale`` times the object's
   larger extent (square pixels; < 1 cuts the head at the FOV edge without wrap-around, a
   "partial head"), with the object's centre shifted by a fraction of the FOV;
2. normalised so that its 99th magnitude percentile is 1 (:mod:`diffusion_core.normalization`),
   and given a smooth random phase (:func:`diffusion_core.training.data.smooth_random_phase`);
3. multiplied by simulated coil maps of one of :data:`COIL_KINDS`, 8 to 16 coils, placed in mm
   around the head (not the FOV): ``loops`` (surface loops on an ellipse, each the 2D Biot–Savart
   field of two antiparallel wires), ``birdcage`` (one channel per rung: the field of one wire),
   ``head_array`` (Gaussian surface-coil profiles with phase ramps), ``random`` (smooth random
   complex fields). Maps are normalised to unit root-sum-of-squares at every pixel, so the SENSE
   combination of the noise-free k-space is the image itself: the reference;
4. Fourier transformed (:func:`diffusion_core.fft.fft2c`) with complex Gaussian noise of
   ``noise_level`` per real channel added (in units of the image's 99th percentile).

The **real case** (:func:`real_brain_case`) is the fully sampled 8-coil brain of
``../shared/data/eval`` (optionally reduced in resolution by keeping the centre of k-space);
its reference is the SENSE combination of the full data with ESPIRiT maps of the full data (as
``benchmarks/prior_quality.py`` does), ``maps_true`` those maps, ``noise_sigma`` estimated from
the k-space periphery.

Masks (:func:`make_mask`, classes :data:`MASK_CLASSES`): 1D random columns at R=4 and R=8 with a
centred ACS block, and 2D Poisson-disc at R=8 with a calibration square
(:mod:`diffusion_core.masks`); calibration sizes scale with the matrix (20 / 16 / 24 at 180).

:func:`case_plan` draws a varied, seeded list of :class:`CaseSpec` per subject (orientations in
turn, coil kinds in turn, both noise levels, varied FOV, shift and coil count).

    from benchmarks.generalization_cases import case_plan, load_subject, make_case, make_mask
    subject = load_subject(Path("../shared/data/train_volumes/niivue_FLAIR.nii.gz"))
    for spec in case_plan(subject, cases=4, matrix=(160, 160), seed=0):
        case = make_case(subject, spec.slice_spec, spec.coils, spec.noise_level, spec.placement,
                         spec.seed)
        mask = make_mask("R=4 1D random", case.reference.shape, seed=0)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffusion_core.fft import fft2c
from diffusion_core.masks import equispaced_columns_mask, poisson_disc_mask, random_columns_mask
from diffusion_core.normalization import magnitude_scale

COIL_KINDS = ("loops", "birdcage", "head_array", "random")
NOISE_LEVELS = (0.01, 0.03)
MASK_CLASSES = ("R=4 1D random", "R=8 1D random", "R=8 2D Poisson")
# A scanner's parallel-imaging pattern (GRAPPA / SENSE): every R-th line plus an ACS block of
# 24 lines per 192; not among the benchmark's default classes (the replay check uses them).
EQUISPACED_CLASSES = ("R=2 1D equispaced", "R=3 1D equispaced", "R=4 1D equispaced")
ORIENTATIONS = ("sagittal", "coronal", "axial")  # slice normal along volume axis 0, 1, 2


@dataclass(frozen=True)
class Subject:
    """One volume resampled to 1 mm: name (subject, aliases applied), volume (x, y, z) float32."""

    name: str
    path: Path
    volume: np.ndarray


@dataclass(frozen=True)
class SliceSpec:
    """A slice normal to volume ``axis`` (0 sagittal, 1 coronal, 2 axial) at ``position`` in
    [0, 1] of the object's extent along that axis (0.5: its middle)."""

    axis: int
    position: float

    def __post_init__(self) -> None:
        if self.axis not in (0, 1, 2):
            raise ValueError(f"SliceSpec.axis: expected 0, 1 or 2, got {self.axis}")
        if not 0.0 <= self.position <= 1.0:
            raise ValueError(f"SliceSpec.position: expected in [0, 1], got {self.position}")


@dataclass(frozen=True)
class CoilSpec:
    """``count`` simulated coils of ``kind`` (one of :data:`COIL_KINDS`)."""

    kind: str
    count: int

    def __post_init__(self) -> None:
        if self.kind not in COIL_KINDS:
            raise ValueError(f"CoilSpec.kind: expected one of {COIL_KINDS}, got {self.kind!r}")
        if not 2 <= self.count <= 64:
            raise ValueError(f"CoilSpec.count: expected 2..64 coils, got {self.count}")


@dataclass(frozen=True)
class Placement:
    """Field of view: ``matrix`` (ny, nx) pixels; the larger side spans ``fov_scale`` x the
    object's larger extent; the object's centre sits ``shift`` (dy, dx) x the FOV off centre."""

    matrix: tuple[int, int]
    fov_scale: float = 1.3
    shift: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if len(self.matrix) != 2 or min(self.matrix) < 32:
            raise ValueError(f"Placement.matrix: expected (ny, nx) >= 32 each, got {self.matrix}")
        if not 0.5 <= self.fov_scale <= 3.0:
            raise ValueError(f"Placement.fov_scale: expected in [0.5, 3], got {self.fov_scale}")
        if max(abs(s) for s in self.shift) > 0.5:
            raise ValueError(f"Placement.shift: expected |dy|, |dx| <= 0.5, got {self.shift}")


@dataclass(frozen=True)
class CaseSpec:
    """Everything :func:`make_case` needs besides the subject."""

    slice_spec: SliceSpec
    coils: CoilSpec
    noise_level: float
    placement: Placement
    seed: int


@dataclass(frozen=True)
class CaseMeta:
    """What a case is: ``source`` ``volume`` or ``real``; geometry in mm; coils; noise."""

    name: str
    subject: str
    source: str
    orientation: str
    slice_index: int
    coils: str
    coil_count: int
    noise_level: float
    matrix: tuple[int, int]
    pixel_mm: float
    fov_scale: float
    shift: tuple[float, float]
    seed: int


@dataclass(frozen=True)
class Case:
    """kspace (c, ky, kx) complex64, fully sampled, with noise; reference (y, x) complex64 (the
    truth); maps_true (c, y, x) complex64 (unit root-sum-of-squares where nonzero); noise_sigma:
    noise std per real channel of ``kspace`` (simulated, or estimated for the real case)."""

    kspace: torch.Tensor
    reference: torch.Tensor
    maps_true: torch.Tensor
    noise_sigma: float
    meta: CaseMeta


def load_subject(path: Path) -> Subject:
    """Read a NIfTI / MGZ volume and resample it to 1 mm isotropic."""
    from diffusion_core.training.data import subject_of
    from diffusion_core.training.volumes import load_volume, resample_isotropic

    volume, zooms = load_volume(path)
    return Subject(subject_of(path), path, resample_isotropic(volume, zooms, 1.0))


def prior_subjects(card: Path) -> dict[str, str]:
    """Subject -> split (``train`` / ``validation``) of the prior's model card (its ``.json``)."""
    try:
        entries = json.loads(card.read_text())["training_data"]
        return {str(e["subject"]): str(e["split"]) for e in entries}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{card}: expected a model card with training_data [{{subject, split}}] ({err})"
        ) from err


def _slice(volume: np.ndarray, spec: SliceSpec) -> tuple[np.ndarray, int]:
    """The 2D slice (rows, cols) float32 and its index; rows run top-down (flipped last axis)."""
    moved = np.moveaxis(volume, spec.axis, 0)
    threshold = 0.15 * float(np.percentile(volume, 99.0))
    occupied = np.flatnonzero((moved > threshold).any(axis=(1, 2)))
    if occupied.size == 0:
        raise ValueError("volume: no voxel above 15 % of its 99th percentile; expected an object")
    index = int(occupied[0]) + round(spec.position * float(occupied[-1] - occupied[0]))
    return np.ascontiguousarray(moved[index].T[::-1]), index


def _object_box(image: np.ndarray) -> tuple[float, float, float, float]:
    """Centre (cy, cx) and extent (hy, hx) in pixels of the pixels above 15 % of the 99th pct."""
    inside = image > 0.15 * float(np.percentile(image, 99.0))
    if not inside.any():
        raise ValueError("slice: empty (no pixel above 15 % of its 99th percentile)")
    ys, xs = np.nonzero(inside)
    return (
        (ys.min() + ys.max()) / 2,
        (xs.min() + xs.max()) / 2,
        float(ys.max() - ys.min() + 1),
        float(xs.max() - xs.min() + 1),
    )


def _resample(image: np.ndarray, factor: float) -> np.ndarray:
    """Image scaled by ``factor`` (< 1: area averaging; > 1: bilinear)."""
    size = [max(1, round(n * factor)) for n in image.shape]
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    if factor < 1:
        return F.interpolate(x, size=size, mode="area")[0, 0].numpy()
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def _place(image: np.ndarray, placement: Placement) -> tuple[np.ndarray, float, np.ndarray]:
    """The slice (1 mm pixels) in the FOV: (image (ny, nx), pixel mm, object centre (y, x) mm
    relative to the FOV centre, and the object's semi-axes in mm)."""
    cy, cx, hy, hx = _object_box(image)
    ny, nx = placement.matrix
    pixel_mm = placement.fov_scale * max(hy, hx) / max(ny, nx)
    small = _resample(image, 1.0 / pixel_mm)
    out = np.zeros((ny, nx), dtype=np.float32)
    # object centre in the small image -> FOV centre + shift
    oy = round(ny / 2 + placement.shift[0] * ny - cy / pixel_mm)
    ox = round(nx / 2 + placement.shift[1] * nx - cx / pixel_mm)
    ys, xs = max(0, -oy), max(0, -ox)
    ye, xe = min(small.shape[0], ny - oy), min(small.shape[1], nx - ox)
    if ye <= ys or xe <= xs:
        raise ValueError(f"placement {placement}: the object lies outside the field of view")
    out[oy + ys : oy + ye, ox + xs : ox + xe] = small[ys:ye, xs:xe]
    centre_mm = np.array([placement.shift[0] * ny, placement.shift[1] * nx]) * pixel_mm
    return out, pixel_mm, np.concatenate([centre_mm, [hy / 2, hx / 2]])


def _grid_mm(shape: tuple[int, int], pixel_mm: float) -> tuple[torch.Tensor, torch.Tensor]:
    y = (torch.arange(shape[0], dtype=torch.float64) - shape[0] / 2) * pixel_mm
    x = (torch.arange(shape[1], dtype=torch.float64) - shape[1] / 2) * pixel_mm
    return torch.meshgrid(y, x, indexing="ij")


def _wire_field(y: torch.Tensor, x: torch.Tensor, py: float, px: float) -> torch.Tensor:
    """Receive sensitivity B_x - i B_y of a straight wire through (py, px), normal to the plane
    (2D Biot–Savart: B = z x r / |r|^2)."""
    dy, dx = y - py, x - px
    r2 = (dy * dy + dx * dx).clamp_min(1.0)
    return torch.complex(-dy / r2, -dx / r2)


def simulated_maps(
    shape: tuple[int, int],
    pixel_mm: float,
    head: np.ndarray,
    coils: CoilSpec,
    generator: torch.Generator,
) -> torch.Tensor:
    """(count, y, x) complex64 coil maps, unit root-sum-of-squares at every pixel.

    ``head``: (centre y, centre x, semi-axis y, semi-axis x) in mm relative to the FOV centre;
    coils sit on an ellipse 15-35 mm outside it, starting at a random angle.
    """
    y, x = _grid_mm(shape, pixel_mm)
    y, x = y - head[0], x - head[1]
    n = coils.count

    def uniform(lo: float, hi: float, size: int = 1) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(size, generator=generator, dtype=torch.float64)

    gap = float(uniform(15.0, 35.0))
    ry, rx = float(head[2]) + gap, float(head[3]) + gap
    angles = float(uniform(0, 2 * math.pi)) + torch.arange(n, dtype=torch.float64) * (
        2 * math.pi / n
    )
    phases = uniform(0, 2 * math.pi, n)
    maps = []
    for k in range(n):
        a = float(angles[k])
        py, px = ry * math.sin(a), rx * math.cos(a)
        if coils.kind in ("loops", "birdcage"):
            if coils.kind == "loops":  # two antiparallel wires along the ellipse's tangent
                half = 0.4 * math.pi * (ry + rx) / n
                ty, tx = rx * math.cos(a), -ry * math.sin(a)
                norm = math.hypot(ty, tx)
                ty, tx = half * ty / norm, half * tx / norm
                m = _wire_field(y, x, py + ty, px + tx) - _wire_field(y, x, py - ty, px - tx)
            else:
                m = _wire_field(y, x, py, px)
        elif coils.kind == "head_array":
            width = float(uniform(0.6, 1.2)) * (ry + rx) / 2
            dist2 = (y - py) ** 2 + (x - px) ** 2
            ramp = (float(uniform(-1, 1)) * y + float(uniform(-1, 1)) * x) / (ry + rx)
            m = torch.polar(torch.exp(-dist2 / (2 * width**2)), math.pi * ramp)
        else:
            grid = int(torch.randint(2, 5, (1,), generator=generator))
            coarse = torch.randn((2, grid, grid), generator=generator, dtype=torch.float64)
            coarse[0] += 1.5  # keep the magnitude away from zero on average
            field = F.interpolate(coarse[None], size=shape, mode="bicubic", align_corners=True)[0]
            m = torch.complex(field[0], field[1])
        maps.append(m * torch.polar(torch.ones((), dtype=torch.float64), phases[k]))
    stack = torch.stack(maps)
    rss = stack.abs().pow(2).sum(0, keepdim=True).sqrt().clamp_min(1e-12)
    return (stack / rss).to(torch.complex64)


def make_case(
    subject: Subject | Path,
    slice_spec: SliceSpec,
    coils: CoilSpec,
    noise_level: float,
    placement: Placement,
    seed: int,
) -> Case:
    """One volume case (see the module docstring); the same arguments give the same case."""
    if not noise_level >= 0:
        raise ValueError(f"noise_level: expected >= 0, got {noise_level}")
    if isinstance(subject, Path):
        subject = load_subject(subject)
    g = torch.Generator().manual_seed(seed)
    image2d, index = _slice(subject.volume, slice_spec)
    placed, pixel_mm, head = _place(image2d, placement)
    magnitude = torch.from_numpy(placed)
    magnitude = magnitude / magnitude_scale(magnitude)
    from diffusion_core.training.data import smooth_random_phase

    phase = smooth_random_phase(1, placement.matrix, 4, 1.0, g)[0]
    reference = torch.polar(magnitude, phase).to(torch.complex64)
    maps = simulated_maps(placement.matrix, pixel_mm, head, coils, g)
    clean = fft2c(maps * reference)
    noise = torch.complex(
        torch.randn(clean.shape, generator=g), torch.randn(clean.shape, generator=g)
    )
    kspace = (clean + noise_level * noise).to(torch.complex64)
    orientation = ORIENTATIONS[slice_spec.axis]
    name = (
        f"{subject.name} {orientation} {index}, {coils.kind} x{coils.count}, "
        f"noise {noise_level:g}, fov x{placement.fov_scale:.2f}"
    )
    meta = CaseMeta(
        name,
        subject.name,
        "volume",
        orientation,
        index,
        coils.kind,
        coils.count,
        float(noise_level),
        tuple(placement.matrix),  # type: ignore[arg-type]
        float(pixel_mm),
        placement.fov_scale,
        placement.shift,
        seed,
    )
    return Case(kspace, reference, maps, float(noise_level), meta)


def _crop_kspace(kspace: torch.Tensor, size: int) -> torch.Tensor:
    """Centre of k-space so that the larger side is ``size`` (same FOV, coarser pixels)."""
    ny, nx = kspace.shape[-2:]
    factor = min(1.0, size / max(ny, nx))
    cy, cx = round(ny * factor), round(nx * factor)
    y0, x0 = ny // 2 - cy // 2, nx // 2 - cx // 2
    return kspace[..., y0 : y0 + cy, x0 : x0 + cx].contiguous() * math.sqrt(cy * cx / (ny * nx))


def real_brain_case(path: Path, size: int | None = None) -> Case:
    """The real fully sampled multi-coil k-space (c, ky, kx) in ``path`` (.npy), optionally
    reduced to a larger side of ``size`` pixels; reference = SENSE combination with ESPIRiT maps
    of the full data."""
    from diffusion_core.classical import zero_filled
    from diffusion_core.espirit import espirit_maps
    from diffusion_core.reconstruct import estimate_noise_sigma

    try:
        data = np.load(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from err
    if data.ndim != 3 or not np.iscomplexobj(data):
        raise ValueError(f"{path}: expected complex (coils, ky, kx), got {data.dtype} {data.shape}")
    full = torch.from_numpy(data).to(torch.complex64)
    if size is not None:
        full = _crop_kspace(full, size)
    ones = torch.ones(full.shape[-2:])
    maps = espirit_maps(full)
    reference = zero_filled(full, ones, maps)
    stem = path.name.removesuffix(".npy")
    ny, nx = full.shape[-2:]
    meta = CaseMeta(
        f"{stem} (real {full.shape[0]} coils, {ny}x{nx})",
        stem,
        "real",
        "real",
        0,
        "measured",
        int(full.shape[0]),
        math.nan,
        (int(ny), int(nx)),
        math.nan,
        math.nan,
        (0.0, 0.0),
        0,
    )
    return Case(full, reference, maps, estimate_noise_sigma(full, ones), meta)


def make_mask(mask_class: str, shape: tuple[int, int], seed: int) -> torch.Tensor:
    """(ky, kx) float32 mask of one of :data:`MASK_CLASSES`; calibration sizes scale with the
    matrix: 20 (R=4) / 16 (R=8) ACS columns per 180 columns, a 24 x 24 square per 180 pixels
    (at least 8 / 12)."""
    ny, nx = int(shape[0]), int(shape[1])
    if mask_class == "R=4 1D random":
        return random_columns_mask((ny, nx), 4.0, max(8, round(20 * nx / 180)), seed)
    if mask_class == "R=8 1D random":
        return random_columns_mask((ny, nx), 8.0, max(8, round(16 * nx / 180)), seed)
    if mask_class == "R=8 2D Poisson":
        return poisson_disc_mask((ny, nx), 8.0, max(12, round(24 * min(ny, nx) / 180)), seed)
    if mask_class in EQUISPACED_CLASSES:  # deterministic: ``seed`` is not used
        return equispaced_columns_mask((ny, nx), float(mask_class[2]), max(8, round(nx / 8)))
    raise ValueError(
        f"mask class: expected one of {MASK_CLASSES + EQUISPACED_CLASSES}, got {mask_class!r}"
    )


def case_plan(subject: Subject, cases: int, matrix: tuple[int, int], seed: int) -> list[CaseSpec]:
    """``cases`` varied specs for one subject: orientations and coil kinds in turn (offset per
    subject), noise levels alternating, slice position in [0.3, 0.7] of the object, 8-16 coils,
    FOV 1.1-1.5 x the object (one case in four 0.8-0.95: a partial head), shift up to 8 %."""
    offset = sum(map(ord, subject.name))
    rng = np.random.default_rng([seed, offset])
    specs = []
    for i in range(cases):
        partial = (i + offset) % 4 == 3
        fov = float(rng.uniform(0.8, 0.95) if partial else rng.uniform(1.1, 1.5))
        shift = (float(rng.uniform(-0.08, 0.08)), float(rng.uniform(-0.08, 0.08)))
        specs.append(
            CaseSpec(
                SliceSpec((i + offset) % 3, float(rng.uniform(0.3, 0.7))),
                CoilSpec(COIL_KINDS[(i + offset) % len(COIL_KINDS)], int(rng.integers(8, 17))),
                NOISE_LEVELS[(i + offset) % 2],
                Placement(matrix, fov, shift),
                int(rng.integers(0, 2**31 - 1)),
            )
        )
    return specs
