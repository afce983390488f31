"""Group acquisitions into slices (grouping) and place them on the k-space grid (assembly).

Grouping only decides *which* lines belong together and *when* a group is complete
(ACQ_LAST_IN_SLICE, or the end of the stream); assembly turns one complete group into tensors.
Only one group per open slice is held, so memory stays bounded over long scans.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import NamedTuple

import ismrmrd
import numpy as np
import torch

from gadget.geometry import EncodingGeometry
from gadget.stream import Line, NoiseState, NoiseStatistics

log = logging.getLogger(__name__)


class AssemblyError(ValueError):
    """A group of acquisitions that cannot be placed on the grid (the message names the line)."""


class SliceKey(NamedTuple):
    """The encoding counters that tell one image apart from another."""

    slice: int
    contrast: int
    phase: int
    repetition: int
    set: int
    average: int

    @classmethod
    def of(cls, acquisition: ismrmrd.Acquisition) -> SliceKey:
        idx = acquisition.idx
        return cls(idx.slice, idx.contrast, idx.phase, idx.repetition, idx.set, idx.average)

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self._asdict().items())

    def location(self, dimension: str = "") -> tuple[int, ...]:
        """The counters that stay while an interleaved pattern moves along ``dimension`` (all but
        it), or, with none named, along phase and repetition: (slice, contrast, set, average)."""
        moving = _moving(dimension)
        return tuple(v for k, v in self._asdict().items() if k not in moving)


def _moving(dimension: str) -> tuple[str, ...]:
    """The counters an interleaved pattern moves along (see :meth:`SliceKey.location`)."""
    return (dimension,) if dimension else ("repetition", "phase")


@dataclass(frozen=True)
class SliceGroup:
    """The acquisitions of one slice, in stream order, and the noise measured before them.

    Attributes:
        indices: each acquisition's index in the stream (for error messages); empty: unknown.
        noise_note: why there is no noise (or how it was measured), for the images' meta.
    """

    key: SliceKey
    acquisitions: tuple[ismrmrd.Acquisition, ...]
    noise: NoiseStatistics | None
    indices: tuple[int, ...] = ()
    noise_note: str = ""

    def lines(self) -> list[Line]:
        indices = self.indices or tuple(range(len(self.acquisitions)))
        return [Line(i, a) for i, a in zip(indices, self.acquisitions, strict=True)]


def group_slices(lines: Iterable[tuple[Line, NoiseState]]) -> Iterator[SliceGroup]:
    """Yield a group when its last line (ACQ_LAST_IN_SLICE) arrives; the rest at the stream's end
    (also when the stream ended early), so no line read is left out."""
    open_groups: dict[SliceKey, list[Line]] = {}
    noise: dict[SliceKey, NoiseState] = {}
    for line, state in lines:
        key = SliceKey.of(line.acquisition)
        open_groups.setdefault(key, []).append(line)
        noise.setdefault(key, state)
        if line.acquisition.is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE):
            yield _group(key, open_groups.pop(key), noise.pop(key))
    for key, group in open_groups.items():
        log.info("end of stream: reconstructing the open slice (%s) of %d lines", key, len(group))
        yield _group(key, group, noise[key])


def _group(key: SliceKey, lines: list[Line], state: NoiseState) -> SliceGroup:
    return SliceGroup(
        key,
        tuple(line.acquisition for line in lines),
        state.statistics,
        tuple(line.stream_index for line in lines),
        state.note,
    )


@dataclass(frozen=True)
class AssembledSlice:
    """One slice on the reconstruction grid (readout oversampling removed).

    Attributes:
        key: the slice's encoding counters.
        kspace: (coils, ky, kx) complex64 imaging lines; unmeasured samples are 0.
        mask: (ky, kx) float32, 1 where ``kspace`` was measured.
        calibration: (coils, ky, kx) complex64 calibration lines of a separate reference scan
            (calibration mode separate or external), used for the coil maps; otherwise None.
        noise_covariance: (coils, coils) covariance of one sample at the imaging dwell time, or None.
        reference: header of the line closest to the k-space centre (geometry, time stamps).
        source: the raw items the slice was made of (references, not copies), passed downstream
            unchanged if the slice cannot be reconstructed.
        noise_note: whether and how the data are prewhitened (``prewhitened: ...`` or
            ``not prewhitened: <reason>``), for the images' meta.
        calibration_note: where ``calibration`` came from when it is not the slice's own
            reference lines (:func:`interleaved_calibration`), for the images' meta.
    """

    key: SliceKey
    kspace: torch.Tensor
    mask: torch.Tensor
    calibration: torch.Tensor | None
    noise_covariance: torch.Tensor | None
    reference: ismrmrd.AcquisitionHeader
    source: tuple[object, ...] = ()
    noise_note: str = ""
    calibration_note: str = ""

    @property
    def prewhitened(self) -> bool:
        """True when the reconstruction prewhitens with a measured noise covariance."""
        return self.noise_covariance is not None


def _check_lines(group: SliceGroup) -> int:
    """Channel count shared by the group's lines; raises AssemblyError naming the odd line."""
    lines = group.lines()
    channels = lines[0].acquisition.active_channels
    for line in lines:
        acquisition = line.acquisition
        if acquisition.active_channels != channels or channels == 0:
            raise AssemblyError(
                f"slice ({group.key}): {line.describe()} has {acquisition.active_channels} "
                f"channels, expected {channels or 'at least 1'} like the slice's first line"
            )
        if not np.isfinite(acquisition.data).all():
            raise AssemblyError(
                f"slice ({group.key}): {line.describe()} has non-finite (NaN or infinite) samples"
            )
    return channels


def _noise(group: SliceGroup, channels: int) -> tuple[NoiseStatistics | None, str]:
    """The group's noise, or None and why (a covariance of another channel count is not used)."""
    if group.noise is not None and group.noise.covariance.shape[0] != channels:
        note = (
            f"not prewhitened: the noise scans had {group.noise.covariance.shape[0]} channels, "
            f"the data {channels}"
        )
        log.warning("slice (%s): %s", group.key, note)
        return None, note
    return group.noise, group.noise_note


def assemble(group: SliceGroup, geometry: EncodingGeometry) -> AssembledSlice:
    """Place the lines of ``group`` on the (ky, kx) grid of ``geometry``.

    Line ``kspace_encode_step_1 = e`` goes to row ``e - ky_center + ky // 2``; sample ``s`` to
    column ``s - center_sample + kx_encoded // 2``, so partial Fourier and asymmetric echoes leave
    the unmeasured rows and columns at 0 with mask 0. Repeated lines are averaged. Readout
    oversampling is removed by cropping the readout in image space (diffusion_core.fft).
    """
    channels = _check_lines(group)
    statistics, noise_note = _noise(group, channels)
    ny, _ = geometry.grid_shape
    nx_encoded = geometry.encoded_matrix[0]
    grids = 2 if geometry.separate_calibration else 1
    sums = np.zeros((grids, channels, ny, nx_encoded), dtype=np.complex64)
    counts = np.zeros((grids, ny, nx_encoded), dtype=np.float32)
    centre = min(
        group.acquisitions, key=lambda a: abs(a.idx.kspace_encode_step_1 - geometry.ky_center)
    )
    for line in group.lines():
        acquisition = line.acquisition
        row = acquisition.idx.kspace_encode_step_1 - geometry.ky_center + ny // 2
        start = nx_encoded // 2 - acquisition.center_sample
        stop = start + acquisition.number_of_samples
        if not (0 <= row < ny and 0 <= start and stop <= nx_encoded):
            raise AssemblyError(
                f"slice ({group.key}): {line.describe()} with {acquisition.number_of_samples} "
                f"samples, centre sample {acquisition.center_sample} falls outside the encoded grid "
                f"{ny} x {nx_encoded} (row {row}, columns {start}..{stop - 1}); expected "
                f"kspace_encode_step_1 within the header's limits {geometry.ky_limits}"
            )
        grid = _grid(acquisition, geometry.separate_calibration)
        sums[grid, :, row, start:stop] += acquisition.data
        counts[grid, row, start:stop] += 1
    placed, measured = [], []
    for grid in range(grids):
        kspace = torch.from_numpy(sums[grid] / np.maximum(counts[grid], 1))
        k, m = remove_oversampling(
            kspace, torch.from_numpy(counts[grid] > 0), geometry.recon_matrix[0]
        )
        placed.append(k * m)
        measured.append(m)
    noise = None
    if statistics is not None:
        noise = statistics.for_dwell_time(float(centre.sample_time_us))
    has_calibration = grids == 2 and bool(measured[1].any())
    return AssembledSlice(
        key=group.key,
        kspace=placed[0],
        mask=measured[0].to(torch.float32),
        calibration=placed[1] if has_calibration else None,
        noise_covariance=noise,
        reference=centre.getHead(),
        source=group.acquisitions,
        noise_note=noise_note,
    )


def _grid(acquisition: ismrmrd.Acquisition, separate_calibration: bool) -> int:
    """The grid a line goes to: 0 = image data, 1 = separate calibration data (for coil maps).

    Lines flagged ACQ_IS_PARALLEL_CALIBRATION (only) are image data too unless the header's
    calibration mode is separate or external (a reference scan with its own contrast).
    """
    calibration_only = acquisition.is_flag_set(
        ismrmrd.ACQ_IS_PARALLEL_CALIBRATION
    ) and not acquisition.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    return 1 if calibration_only and separate_calibration else 0


def remove_oversampling(
    kspace: torch.Tensor, measured: torch.Tensor, nx: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop the readout of (coils, ky, kx_encoded) k-space to ``nx`` samples in image space.

    Only measured rows are transformed (1D along the readout, with diffusion_core.fft). A column
    of the coarser grid is measured where its k lies inside the row's measured readout range.
    """
    from diffusion_core.fft import fft2c, ifft2c

    nx_encoded = kspace.shape[-1]
    if nx_encoded == nx:
        return kspace, measured
    rows = measured.any(dim=-1).nonzero().squeeze(-1)
    first = (nx_encoded - nx) // 2
    lines = kspace[:, rows].unsqueeze(-2)  # (coils, rows, 1, kx): a 2D FFT of size 1 x kx is 1D
    cropped = torch.zeros((*kspace.shape[:-1], nx), dtype=kspace.dtype)
    cropped[:, rows] = fft2c(ifft2c(lines)[..., first : first + nx]).squeeze(-2)
    # Row by row, a coarse column is measured when its k lies inside the measured readout range.
    k = (torch.arange(nx) - nx // 2) * (nx_encoded / nx) + nx_encoded // 2
    any_measured = measured.any(dim=-1)
    lo = torch.where(any_measured, measured.float().argmax(-1), nx_encoded)
    hi = torch.where(any_measured, nx_encoded - 1 - measured.flip(-1).float().argmax(-1), -1)
    covered = (k >= lo[..., None]) & (k <= hi[..., None])
    return cropped, covered


# the central block of k-space kept of each slice of an interleaved window: twice the largest
# ESPIRiT calibration block (diffusion_core.espirit.CALIB_SIZE), all the coil maps are made from
WINDOW_BLOCK = 48


@dataclass(frozen=True)
class _Kept:
    """What an interleaved window keeps of a slice: its counters, grid shape and central block."""

    key: SliceKey
    shape: tuple[int, ...]
    kspace: torch.Tensor  # (coils, <= WINDOW_BLOCK, <= WINDOW_BLOCK), zero where not measured
    mask: torch.Tensor

    @staticmethod
    def block(shape: tuple[int, ...]) -> tuple[slice, slice]:
        ny, nx = shape[-2:]
        by, bx = min(ny, WINDOW_BLOCK), min(nx, WINDOW_BLOCK)
        return slice(ny // 2 - by // 2, ny // 2 - by // 2 + by), slice(
            nx // 2 - bx // 2, nx // 2 - bx // 2 + bx
        )

    @classmethod
    def of(cls, assembled: AssembledSlice) -> _Kept:
        rows, cols = cls.block(tuple(assembled.kspace.shape))
        mask = assembled.mask[rows, cols].clone()
        kspace = assembled.kspace[:, rows, cols] * mask
        return cls(assembled.key, tuple(assembled.kspace.shape), kspace, mask)


def interleaved_calibration(
    slices: Iterable[AssembledSlice], interleave: int, dimension: str = ""
) -> Iterator[AssembledSlice]:
    """Coil-map calibration data for calibration mode ``interleaved``.

    There successive repetitions (or phases) of one slice location sample shifted copies of one
    pattern of every ``interleave``-th line, so none of them alone may hold a calibration block,
    while ``interleave`` successive ones sample every line. Each slice gets as ``calibration`` the
    average central k-space (:data:`WINDOW_BLOCK`) of the last ``interleave`` slices of its
    location up to it (its counters but the interleaving ``dimension``:
    :meth:`SliceKey.location`). The first ones of a location wait for ``interleave`` to arrive
    (or for the end of the stream, and then use what came). Their own data and mask stay as they
    were: only the coil maps see the other slices. Per location the window keeps the central
    blocks of ``interleave`` slices, and only the waiting slices are held whole. A slice with
    calibration lines of its own (mode separate or external) passes as it is.
    """
    if interleave < 2:
        yield from slices
        return
    recent: dict[tuple[int, ...], deque[_Kept]] = {}
    waiting: dict[tuple[int, ...], list[AssembledSlice]] = {}
    for assembled in slices:
        location = assembled.key.location(dimension)
        window = recent.setdefault(location, deque(maxlen=interleave))
        window.append(_Kept.of(assembled))
        waiting.setdefault(location, []).append(assembled)
        if len(window) == interleave:
            for held in waiting.pop(location):
                yield _calibrated(held, window, dimension)
    for location, held_slices in waiting.items():
        log.info(
            "end of stream: %d of %d interleaved slices for the coil maps of (%s)",
            len(recent[location]),
            interleave,
            held_slices[0].key,
        )
        for held in held_slices:
            yield _calibrated(held, recent[location], dimension)


def _calibrated(
    assembled: AssembledSlice, window: Iterable[_Kept], dimension: str
) -> AssembledSlice:
    """``assembled`` with the average central k-space of the slices of ``window`` (those of its
    grid) as its calibration, zero outside the block, and a note naming them."""
    if assembled.calibration is not None:
        return assembled
    shape = tuple(assembled.kspace.shape)
    same = [kept for kept in window if kept.shape == shape]
    rows, cols = _Kept.block(shape)
    total = torch.zeros_like(assembled.kspace[:, rows, cols])
    counts = torch.zeros_like(assembled.mask[rows, cols])
    for kept in same:
        total += kept.kspace
        counts += kept.mask
    calibration = torch.zeros_like(assembled.kspace)
    calibration[:, rows, cols] = total / counts.clamp(min=1)
    names = ", ".join(
        " ".join(f"{name} {getattr(kept.key, name)}" for name in _moving(dimension))
        for kept in same
    )
    note = f"coil maps from {len(same)} interleaved slices ({names})"
    return replace(assembled, calibration=calibration, calibration_note=note)
