"""Slices from Gadgetron's buffered data (AcquisitionAccumulateTrigger + BucketToBuffer -> ReconData).

A ReconData holds one or more bits; each bit's buffer is (RO, E1, E2, CHA, N, S, LOC) with the
acquisition headers (E1, E2, N, S, LOC) and a sampling description; an optional reference buffer
holds the calibration lines. Each (N, S, LOC) of a bit becomes one assembled slice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import ismrmrd
import numpy as np
import torch
from gadgetron.types.recon_data import ReconBuffer, ReconData

from gadget.assembly import AssembledSlice, AssemblyError, SliceKey, remove_oversampling
from gadget.geometry import EncodingGeometry

log = logging.getLogger(__name__)


def recon_data_items(
    items: Iterable[object], forward: Callable[[object], None]
) -> Iterator[ReconData]:
    """Yield ReconData; ``forward`` anything else unchanged (the first of each type is logged)."""
    seen: set[str] = set()
    for item in items:
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


def slices_of(
    recon_data: Iterable[ReconData], geometry: EncodingGeometry
) -> Iterator[AssembledSlice]:
    """Every (N, S, LOC) of every bit, as an assembled slice."""
    for data in recon_data:
        for bit in data.bits:
            n, s, loc = bit.data.data.shape[4:7]
            for index in np.ndindex(n, s, loc):
                yield _slice(bit.data, bit.ref, index, geometry)


def _rows(
    buffer: ReconBuffer, index: tuple[int, int, int], ny: int
) -> tuple[np.ndarray, list[int]]:
    """(CHA, E1, RO) k-space of one (N, S, LOC) and the grid row of each E1 line (-1 if unused)."""
    data = np.asarray(buffer.data[:, :, 0, :, index[0], index[1], index[2]]).transpose(2, 1, 0)
    centre = buffer.sampling.sampling_limits[1].center
    rows = []
    for e1 in range(data.shape[1]):
        header = buffer.headers[(e1, 0, *index)] if buffer.headers.ndim == 5 else None
        line = (
            header.idx.kspace_encode_step_1
            if header is not None and header.number_of_samples
            else e1
        )
        rows.append(line - centre + ny // 2)
    return data, rows


def _place(
    buffer: ReconBuffer, index: tuple[int, int, int], ny: int
) -> tuple[np.ndarray, np.ndarray]:
    data, rows = _rows(buffer, index, ny)
    kspace = np.zeros((data.shape[0], ny, data.shape[2]), dtype=np.complex64)
    for e1, row in enumerate(rows):
        if not np.any(data[:, e1]):
            continue
        if not 0 <= row < ny:
            raise AssemblyError(
                f"buffer line {e1} maps to row {row}, outside the grid of {ny} lines"
            )
        kspace[:, row] = data[:, e1]
    limits = buffer.sampling.sampling_limits[0]
    measured = np.zeros(kspace.shape[1:], dtype=bool)
    measured[np.any(kspace != 0, axis=(0, 2)), limits.min : limits.max + 1] = True
    return kspace, measured


def _slice(
    buffer: ReconBuffer,
    ref: ReconBuffer | None,
    index: tuple[int, int, int],
    geometry: EncodingGeometry,
) -> AssembledSlice:
    ny = geometry.grid_shape[0]
    if not np.isfinite(buffer.data).all():
        raise AssemblyError(f"buffer (N, S, LOC) = {index}: non-finite (NaN or infinite) samples")
    kspace, measured = _place(buffer, index, ny)
    grids = [(kspace, measured)]
    if ref is not None:
        ref_index = tuple(min(i, m - 1) for i, m in zip(index, ref.data.shape[4:7], strict=True))
        grids.append(_place(ref, ref_index, ny))
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
    centre = buffer.sampling.sampling_limits[1].center
    reference = min(headers, key=lambda h: abs(h.idx.kspace_encode_step_1 - centre))
    idx = reference.idx
    return AssembledSlice(
        key=SliceKey(idx.slice, idx.contrast, idx.phase, idx.repetition, idx.set, idx.average),
        kspace=placed[0][0],
        mask=placed[0][1].to(torch.float32),
        calibration=placed[1][0] if ref is not None else None,
        noise_covariance=None,
        reference=ismrmrd.AcquisitionHeader.from_buffer_copy(reference),
    )
