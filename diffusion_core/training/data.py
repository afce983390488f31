"""Training images for the prior: slices from magnitude volumes or raw k-space, and their augmentation.

Sources are NIfTI/MGZ magnitude volumes (resampled to isotropic pixels and sliced along all
three axes; empty slices dropped) and fully sampled multi-coil HDF5 files (ISMRMRD or fastMRI,
coil-combined with ESPIRiT maps from the calibration block). Every whole slice is divided by
:func:`diffusion_core.normalization.magnitude_scale`, the rule reconstruction uses. A batch is
random crops with flips, transposes, gamma and scale jitter of the magnitude, and a smooth random
phase (real MR images are complex); with ``DataConfig.augment`` set, the stronger augmentation of
:mod:`diffusion_core.training.augment` (zoom, rotation, shift, contrast curves, bias fields, empty
backgrounds, phase kinds). Train and validation sets are split by subject.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from diffusion_core.normalization import magnitude_scale
from diffusion_core.training.augment import AugmentConfig, augmented_crops
from diffusion_core.training.kspace_files import kspace_file_images
from diffusion_core.training.volumes import (
    is_volume_file,
    load_volume,
    nonempty_slices,
    resample_isotropic,
    volume_stem,
)

log = logging.getLogger(__name__)

# Files of one subject in the default training folder (colin27 is one brain at two resolutions).
DEFAULT_SUBJECT_ALIASES: Mapping[str, str] = {
    "colin27_ch2_mricron": "colin27",
    "colin27_ch2better_0.5mm_mricron": "colin27",
}


@dataclass(frozen=True)
class DataConfig:
    """How slices are made from sources and augmented into training crops.

    pixel_mm: isotropic pixel size volumes are resampled to.
    min_foreground: least fraction of object pixels for a slice to be kept.
    crop: side of the square training crops (slices smaller than it are zero-padded).
    phase_grid: side of the low-resolution random field the smooth phase is upsampled from.
    phase_std: standard deviation (radians) of that field; a uniform global phase is added.
    gamma_range, scale_range: ranges of the magnitude gamma and of the overall scale.
    flips: random flips of both axes and a random transpose.
    augment: the strong augmentation (None: off, the batches of the shipped prior's recipe
    exactly; the validation set is always made without it, so validation losses stay comparable).
    """

    pixel_mm: float = 1.0
    min_foreground: float = 0.1
    crop: int = 128
    phase_grid: int = 4
    phase_std: float = 1.0
    gamma_range: tuple[float, float] = (0.8, 1.25)
    scale_range: tuple[float, float] = (0.85, 1.15)
    flips: bool = True
    augment: AugmentConfig | None = None

    def __post_init__(self) -> None:
        if self.pixel_mm <= 0:
            raise ValueError(f"DataConfig.pixel_mm: expected > 0, got {self.pixel_mm}")
        if not 0 <= self.min_foreground < 1:
            raise ValueError(
                f"DataConfig.min_foreground: expected in [0, 1), got {self.min_foreground}"
            )
        if self.crop < 8:
            raise ValueError(f"DataConfig.crop: expected >= 8, got {self.crop}")
        if self.phase_grid < 1:
            raise ValueError(f"DataConfig.phase_grid: expected >= 1, got {self.phase_grid}")
        for name in ("gamma_range", "scale_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"DataConfig.{name}: expected 0 < low <= high, got {(lo, hi)}")


@dataclass
class SliceBank:
    """Normalised slices and the subject each comes from.

    images: each (y, x), float32 magnitude (volume sources) or complex64 (k-space sources),
    divided by its own ``magnitude_scale``.
    """

    images: list[torch.Tensor] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def subject_names(self) -> list[str]:
        return sorted(set(self.subjects))

    def subset(self, subjects: Iterable[str]) -> SliceBank:
        keep = set(subjects)
        pairs = [(im, s) for im, s in zip(self.images, self.subjects, strict=True) if s in keep]
        return SliceBank([p[0] for p in pairs], [p[1] for p in pairs])

    def to(self, device: torch.device | str) -> SliceBank:
        return SliceBank([im.to(device) for im in self.images], list(self.subjects))


def find_sources(paths: Iterable[Path]) -> list[Path]:
    """Volume and HDF5 files among ``paths`` (folders are searched recursively), sorted."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            candidates = sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            candidates = [path]
        else:
            raise FileNotFoundError(f"training data: {path} does not exist")
        found.extend(
            p for p in candidates if is_volume_file(p) or p.suffix.lower() in (".h5", ".hdf5")
        )
    return sorted(set(found))


def subject_of(path: Path, aliases: Mapping[str, str] = DEFAULT_SUBJECT_ALIASES) -> str:
    """Subject name of a source file: its alias if listed, else its stem."""
    stem = volume_stem(path) if is_volume_file(path) else path.stem
    return aliases.get(stem, stem)


def _normalised(image: torch.Tensor) -> torch.Tensor:
    return image / magnitude_scale(image).to(
        image.dtype if not image.is_complex() else torch.float32
    )


def source_slices(path: Path, config: DataConfig) -> list[torch.Tensor]:
    """Normalised non-empty slices of one source file (see :class:`SliceBank` for the dtypes)."""
    if is_volume_file(path):
        volume, zooms = load_volume(path)
        volume = resample_isotropic(volume, zooms, config.pixel_mm)
        slices = [torch.from_numpy(s) for s in nonempty_slices(volume, config.min_foreground)]
    else:
        images = kspace_file_images(path)
        if not images:
            return []
        ref = max(float(magnitude_scale(im)) for im in images)
        slices = [
            im
            for im in images
            if float((im.abs() > 0.15 * ref).float().mean()) >= config.min_foreground
        ]
    return [_normalised(s) for s in slices]


def load_slice_bank(
    sources: Iterable[Path],
    config: DataConfig = DataConfig(),
    aliases: Mapping[str, str] = DEFAULT_SUBJECT_ALIASES,
) -> SliceBank:
    """Slices of all ``sources`` (files or folders); ``ValueError`` if none is usable."""
    sources = list(map(Path, sources))
    files = find_sources(sources)
    bank = SliceBank()
    for path in files:
        slices = source_slices(path, config)
        log.info("%s: %d slices", path.name, len(slices))
        bank.images.extend(slices)
        bank.subjects.extend([subject_of(path, aliases)] * len(slices))
    if not bank.images:
        names = ", ".join(str(p) for p in sources)
        raise ValueError(
            f"training data {names}: no usable slices ({len(files)} NIfTI/MGZ/HDF5 files found; "
            f"slices need at least {config.min_foreground:.0%} object pixels)"
        )
    return bank


def split_by_subject(bank: SliceBank, validation: Iterable[str]) -> tuple[SliceBank, SliceBank]:
    """(train, validation) banks: all slices of the ``validation`` subjects are held out."""
    held = set(validation)
    missing = held - set(bank.subjects)
    if missing:
        raise ValueError(
            f"validation subjects {sorted(missing)} not in the data; subjects are {bank.subject_names}"
        )
    train = bank.subset(set(bank.subjects) - held)
    if not train.images:
        raise ValueError(f"no training slices left after holding out {sorted(held)}")
    return train, bank.subset(held)


def smooth_random_phase(
    batch: int,
    shape: tuple[int, int],
    grid: int,
    std: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Random smooth phase maps (batch, y, x) float32 in radians, on ``device``.

    A (grid x grid) Gaussian field of standard deviation ``std`` (drawn from the CPU
    ``generator``) is upsampled bicubically to ``shape``; a uniform global phase in [0, 2 pi)
    is added.
    """
    coarse = torch.randn((batch, 1, grid, grid), generator=generator) * std
    offset = torch.rand((batch, 1, 1), generator=generator) * (2 * math.pi)
    coarse, offset = coarse.to(device), offset.to(device)
    return F.interpolate(coarse, size=shape, mode="bicubic", align_corners=True)[:, 0] + offset


def _place(image: torch.Tensor, crop: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop (crop, crop) of ``image`` (y, x); sides shorter than ``crop`` are zero-padded."""
    ny, nx = image.shape
    out = image.new_zeros((crop, crop))
    y_src = int(torch.randint(0, max(ny - crop, 0) + 1, (1,), generator=generator))
    x_src = int(torch.randint(0, max(nx - crop, 0) + 1, (1,), generator=generator))
    y_dst = int(torch.randint(0, max(crop - ny, 0) + 1, (1,), generator=generator))
    x_dst = int(torch.randint(0, max(crop - nx, 0) + 1, (1,), generator=generator))
    h, w = min(ny, crop), min(nx, crop)
    out[y_dst : y_dst + h, x_dst : x_dst + w] = image[y_src : y_src + h, x_src : x_src + w]
    return out


def sample_batch(
    bank: SliceBank,
    batch: int,
    config: DataConfig,
    generator: torch.Generator,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A batch (batch, crop, crop) complex64 of augmented crops on ``device`` (default: the bank's).

    Crops are cut where the bank lives (keep it on the CPU: cutting is cheap there), then moved
    to ``device`` for the pointwise augmentation (with ``config.augment``, whole slices go to
    the device on a canvas and are resampled there). All random numbers come from ``generator`` (a
    CPU generator), so a batch is reproducible whatever the devices.
    """
    if len(bank) == 0:
        raise ValueError("sample_batch: the slice bank is empty")
    device = torch.device(device) if device is not None else bank.images[0].device
    crop = config.crop
    index = torch.randint(0, len(bank), (batch,), generator=generator)
    flips = torch.rand((batch, 3), generator=generator) < 0.5
    if config.augment is not None:
        return augmented_crops(
            [bank.images[i] for i in index.tolist()],
            flips if config.flips else torch.zeros_like(flips),
            crop,
            config.augment,
            config.gamma_range,
            config.scale_range,
            config.phase_grid,
            config.phase_std,
            generator,
            device,
        )
    crops = []
    for i, flip in zip(index.tolist(), flips.tolist(), strict=True):
        image = _place(bank.images[i], crop, generator)
        if config.flips:
            image = image.flip([d for d in (0, 1) if flip[d]]) if flip[0] or flip[1] else image
            image = image.transpose(0, 1) if flip[2] else image
        crops.append(image)
    if any(c.is_complex() for c in crops):
        crops = [c.to(torch.complex64) for c in crops]
    x = torch.stack(crops).to(device, non_blocking=True)
    lo, hi = config.gamma_range
    gamma = (lo * (hi / lo) ** torch.rand((batch, 1, 1), generator=generator)).to(device)
    lo, hi = config.scale_range
    scale = (lo + (hi - lo) * torch.rand((batch, 1, 1), generator=generator)).to(device)
    phase = smooth_random_phase(
        batch, (crop, crop), config.phase_grid, config.phase_std, generator, device
    )
    return torch.polar(x.abs().pow(gamma) * scale, x.angle() + phase)
