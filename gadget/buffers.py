"""Slices from Gadgetron's buffered data (AcquisitionAccumulateTrigger + BucketToBuffer -> ReconData).

A ReconData holds one or more bits; each bit's buffer is (RO, E1, E2, CHA, N, S, LOC) with the
acquisition headers (E1, E2, N, S, LOC) and a sampling description; an optional reference buffer
holds the calibration lines. Each (N, S, LOC) of a bit becomes one assembled slice.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import ismrmrd
import numpy as np
import torch
from gadgetron.types.recon_data import ReconBuffer, ReconData

from gadget.assembly import AssembledSlice, AssemblyError, SliceKey, remove_oversampling
from gadget.geometry import EncodingGeometry
from gadget.stream import unpack_buckets

log = logging.getLogger(__name__)


def recon_data_items(
    items: Iterable[object], forward: Callable[[object], None]
) -> Iterator[ReconData]:
    """Yield ReconData; ``forward`` anything else unchanged (the first of each type is logged;
    AcquisitionBuckets are forwarded as their lines and waveforms: they have no writer)."""
    seen: set[str] = set()
    for item in unpack_buckets(items):
        if isinstance(item, ReconData):
            yield item
            continue
        if type(item).__name__ not in seen:
            seen.add(type(item).__name__)
            log.info(
                "passing on unchanged: %s (the buffered handler takes ReconData)",
                type(item).__name__,
            )
        forward(item)


@dataclass(frozen=True)
class BufferSlice:
    """One (N, S, LOC) of one bit of a ReconData, not yet assembled."""

    data: ReconData
    bit: int
    index: tuple[int, int, int]

    def __str__(self) -> str:
        return f"ReconData bit {self.bit}, (N, S, LOC) = {self.index}"


def buffer_slices(recon_data: Iterable[ReconData]) -> Iterator[BufferSlice]:
    """Every (N, S, LOC) of every bit of every ReconData, in order."""
    for data in recon_data:
        for bit_number, bit in enumerate(data.bits):
            n, s, loc = bit.data.data.shape[4:7]
            for index in np.ndindex(n, s, loc):
                yield BufferSlice(data, bit_number, index)


def assemble_buffer(job: BufferSlice, geometry: EncodingGeometry) -> AssembledSlice:
    """The assembled slice of one (N, S, LOC); its ``source`` is the whole ReconData."""
    bit = job.data.bits[job.bit]
    spaces = sorted(
        {
            int(h.encoding_space_ref)
            for h in np.asarray(bit.data.headers).ravel()
            if h is not None and h.number_of_samples
        }
        - {0}
    )
    if spaces:
        # BucketToBuffer makes one bit per <encoding>; encoding 0's grid does not fit the others.
        raise AssemblyError(
            f"{job}: lines of encoding space {', '.join(map(str, spaces))}; this gadget "
            "reconstructs encoding space 0 only"
        )
    assembled = _slice(bit.data, bit.ref, job.index, geometry)
    return dataclasses.replace(assembled, source=(job.data,))


def slices_of(
    recon_data: Iterable[ReconData], geometry: EncodingGeometry
) -> Iterator[AssembledSlice]:
    """Every (N, S, LOC) of every bit, as an assembled slice (raises on the first bad one)."""
    for job in buffer_slices(recon_data):
        yield assemble_buffer(job, geometry)


def _line_columns(header: ismrmrd.AcquisitionHeader, ne0: int, centre0: int) -> tuple[int, int]:
    """The buffer columns BucketToBuffer copied a line into: [first, stop).

    It copies ``number_of_samples - discard_pre - discard_post`` samples to column ``discard_pre``
    when the line fills the buffer and is centred (``center_sample == number_of_samples / 2``, as
    AsymmetricEchoAdjustROGadget leaves it), else to ``centre - center_sample``.
    """
    samples, centre = header.number_of_samples, header.center_sample
    if samples == ne0 and (centre == samples // 2 or centre >= samples):
        first = header.discard_pre
    else:
        first = centre0 - centre
    return first, first + samples - header.discard_pre - header.discard_post


def _place(
    buffer: ReconBuffer,
    index: tuple[int, int, int],
    geometry: EncodingGeometry,
    by_counter: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(CHA, ny, NE0) k-space and mask of one (N, S, LOC) of a buffer, rows placed on the grid.

    BucketToBuffer stores line ``k`` at buffer row ``k + NE1/2 - centre`` (the header's
    ``kspace_encoding_step_1.center``) for image data and embedded reference lines, whose
    sampling centre is then ``NE1/2``: grid row = buffer row - sampling centre + ny/2. Separate or
    external reference lines are stored from the first one acquired (``by_counter``): they are
    placed by their header's counter, as raw lines are.
    """
    ny = geometry.grid_shape[0]
    data = np.asarray(buffer.data[:, :, 0, :, index[0], index[1], index[2]]).transpose(2, 1, 0)
    ne0 = data.shape[2]
    limits = buffer.sampling.sampling_limits
    kspace = np.zeros((data.shape[0], ny, ne0), dtype=np.complex64)
    measured = np.zeros((ny, ne0), dtype=bool)
    for e1 in range(data.shape[1]):
        header = buffer.headers[(e1, 0, *index)]
        acquired = header is not None and header.number_of_samples > 0
        if not acquired and not np.any(data[:, e1]):
            continue
        if by_counter and acquired:
            row = header.idx.kspace_encode_step_1 - geometry.ky_center + ny // 2
        else:
            row = e1 - limits[1].center + ny // 2
        if not 0 <= row < ny:
            raise AssemblyError(
                f"buffer (N, S, LOC) = {index}: buffer line {e1} maps to row {row}, outside the "
                f"grid of {ny} lines (sampling centre {limits[1].center})"
            )
        first, stop = (
            _line_columns(header, ne0, limits[0].center)
            if acquired
            else (limits[0].min, limits[0].max + 1)
        )
        first, stop = max(first, 0), min(stop, ne0)
        kspace[:, row] = data[:, e1]
        measured[row, first:stop] = True
    return kspace * measured, measured


def _slice(
    buffer: ReconBuffer,
    ref: ReconBuffer | None,
    index: tuple[int, int, int],
    geometry: EncodingGeometry,
) -> AssembledSlice:
    if not np.isfinite(buffer.data).all():
        raise AssemblyError(f"buffer (N, S, LOC) = {index}: non-finite (NaN or infinite) samples")
    if buffer.data.shape[0] < geometry.recon_matrix[0]:
        raise AssemblyError(
            f"buffer (N, S, LOC) = {index}: readout of {buffer.data.shape[0]} samples; expected at "
            f"least the recon matrix x {geometry.recon_matrix[0]} (BucketToBuffer shortens it by "
            "discard_pre/post when the header has no parallelImaging section)"
        )
    grids = [_place(buffer, index, geometry, by_counter=False)]
    if ref is not None:
        ref_index = tuple(min(i, m - 1) for i, m in zip(index, ref.data.shape[4:7], strict=True))
        grids.append(_place(ref, ref_index, geometry, by_counter=geometry.separate_calibration))
    placed = []
    for grid_kspace, grid_measured in grids:
        k, m = remove_oversampling(
            torch.from_numpy(grid_kspace), torch.from_numpy(grid_measured), geometry.recon_matrix[0]
        )
        placed.append((k * m, m))
    headers = [
        h
        for h in np.asarray(buffer.headers[:, 0, index[0], index[1], index[2]]).ravel()
        if h.number_of_samples
    ]
    if not headers:
        raise AssemblyError(f"buffer (N, S, LOC) = {index}: no acquired lines")
    reference = min(headers, key=lambda h: abs(h.idx.kspace_encode_step_1 - geometry.ky_center))
    idx = reference.idx
    return AssembledSlice(
        key=SliceKey(idx.slice, idx.contrast, idx.phase, idx.repetition, idx.set, idx.average),
        kspace=placed[0][0],
        mask=placed[0][1].to(torch.float32),
        calibration=placed[1][0] if ref is not None else None,
        noise_covariance=None,
        reference=ismrmrd.AcquisitionHeader.from_buffer_copy(reference),
        noise_note="not prewhitened here: buffered data are prewhitened upstream by Gadgetron's "
        "NoiseAdjustGadget when it has noise",
    )
