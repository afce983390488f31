"""Offline replay: an ISMRMRD HDF5 dataset through the gadget's own handler, images into HDF5.

``input -> checks -> (noise file) -> handle_acquisitions -> output``. The input is checked
first (header bounds, every acquisition header, the memory one slice needs) so that a bad file
is refused within a second. The output follows libismrmrd's layout (:mod:`gadget.mrd_output`):
``/<group>/xml``, the images as ``image_<series>``, and what was not reconstructed: raw lines of
failed slices and lines the gadget passes on in ``data``, the input's waveforms, images and other
datasets. It is written to a temporary file and moved into place at the end, so a run that
fails leaves the output as it was.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import ismrmrd
import numpy as np

from gadget.assembly import AssembledSlice, AssemblyError, SliceKey
from gadget.config import GadgetConfig
from gadget.connections import MemoryConnection
from gadget.geometry import EncodingGeometry, GridLimits, HeaderError
from gadget.handlers import handle_acquisitions
from gadget.mrd_input import (
    AcquisitionReader,
    InputError,
    Survey,
    dataset_group,
    open_hdf5,
    parse_header,
    read_xml,
)
from gadget.mrd_output import MrdWriter
from gadget.pipeline import RunSummary
from gadget.progress import ReplayProgress
from gadget.recon import Reconstructor

if TYPE_CHECKING:
    from diffusion_core.reconstruct import Reconstruction

log = logging.getLogger(__name__)

MAX_NET_ACCELERATION = 32  # a grid with more phase-encode lines per measured line is refused
MAX_SAMPLE_MAGNITUDE = 1e15  # larger samples overflow float32 powers and sums


class ReplayError(RuntimeError):
    """The input cannot be replayed, or the output would be overwritten (names file and item)."""


@dataclass(frozen=True)
class ReplayResult:
    """Summary of a replay: the handler's run, where the images went, what else was kept.

    Attributes:
        image_sets: the counters of each reconstructed image set, in order.
        kept: one line per kind of item written besides the images.
        left_out: one line per kind of item not written, and why.
        unreadable: acquisitions skipped because their samples do not match their header.
    """

    run: RunSummary
    output: Path
    group: str
    acquisitions: int
    passed_through: int
    previews: tuple[Path, ...]
    image_sets: tuple[SliceKey, ...] = ()
    kept: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Every slice reconstructed and every acquisition read."""
        return self.run.ok and not self.unreadable and self.run.slices_done > 0


@dataclass(frozen=True)
class CheckedInput:
    """An input that passed the checks: header text, parsed header, geometry, survey."""

    xml: bytes
    header: ismrmrd.xsd.ismrmrdHeader
    geometry: EncodingGeometry
    survey: Survey


def check_input(path: Path, group: str, limits: GridLimits | None = None) -> CheckedInput:
    """Read and check the header and every acquisition header of ``path:/group`` (no samples)."""
    limits = limits or GridLimits()
    try:
        with open_hdf5(path) as file:
            node = dataset_group(file, path, group)
            xml = read_xml(node, path)
            header = parse_header(xml, f"{path}:/{group}/xml")
            geometry = EncodingGeometry.from_header(header, limits)
            survey = AcquisitionReader.of_group(node, path, limits).survey()
        for channels in sorted(survey.channels):
            geometry.check_channels(channels, f"{path}:/{group}/data", limits)
    except HeaderError as error:
        raise ReplayError(f"{path}:/{group}/xml: {error}") from None
    except (InputError, OSError) as error:
        raise ReplayError(str(error)) from None
    rows = geometry.grid_shape[0]
    if survey.lines and rows > max(64, MAX_NET_ACCELERATION * survey.lines):
        raise ReplayError(
            f"{path}:/{group}/xml: the header's grid has {rows} phase-encode lines, but only "
            f"{survey.lines} distinct lines are measured; expected at least "
            f"{math.ceil(rows / MAX_NET_ACCELERATION)} (net acceleration <= {MAX_NET_ACCELERATION})"
        )
    return CheckedInput(xml, header, geometry, survey)


def open_input(path: Path, group: str) -> tuple[bytes, ismrmrd.xsd.ismrmrdHeader, int]:
    """The input's header text, parsed header and number of acquisitions (clear errors otherwise)."""
    checked = check_input(path, group)
    return checked.xml, checked.header, checked.survey.count


def replay(
    source: Path,
    output: Path,
    config: GadgetConfig,
    *,
    in_group: str = "dataset",
    out_group: str = "dataset",
    overwrite: bool = False,
    png_dir: Path | None = None,
    progress: bool = True,
    reconstructor: Reconstructor | None = None,
    noise: Path | None = None,
    limits: GridLimits | None = None,
) -> ReplayResult:
    """Replay ``source`` through :func:`gadget.handlers.handle_acquisitions` into ``output``.

    Args:
        noise: an ISMRMRD file whose noise scans are fed ahead of the input's acquisitions when
            the input has no noise scan of its own (a separate noise measurement).

    Raises ReplayError before reconstructing anything if the input (or the noise file) cannot be
    used, the prior or device cannot be loaded, or ``output`` already holds ``out_group`` and
    ``overwrite`` is false.
    """
    checked = check_input(source, in_group, limits)
    if output.exists() and output.resolve() == source.resolve():
        raise ReplayError(f"{output}: the output must be another file than the input")
    _check_output(output, out_group, overwrite)
    noise_scans, noise_note = _noise_scans(noise, checked.survey, limits)
    bars = ReplayProgress(enabled=progress)
    reconstructor = _Bounded(reconstructor or _load_reconstructor(config, bars))
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    try:
        with h5py.File(partial, "w") as out:
            sink = _Sink(MrdWriter(out.create_group(out_group)), png_dir)
            sink.writer.write_xml(checked.xml)
            with open_hdf5(source) as file:
                node = dataset_group(file, source, in_group)
                reader = AcquisitionReader.of_group(node, source, limits or GridLimits())
                acquisitions = _Source(noise_scans, reader)
                items = bars.acquisitions(acquisitions, len(acquisitions))
                connection = MemoryConnection(config.to_xml(), checked.header, items, sink)
                run = handle_acquisitions(connection, reconstructor)
                bars.close()
                kept, left_out = _keep_the_rest(node, sink, checked.survey, run)
        _move_into_place(partial, output, out_group)
    finally:
        bars.close()
        partial.unlink(missing_ok=True)
    return ReplayResult(
        run=run,
        output=output,
        group=out_group,
        acquisitions=checked.survey.count,
        passed_through=sink.acquisitions,
        previews=tuple(sink.previews),
        image_sets=tuple(sink.image_sets),
        kept=tuple(kept),
        left_out=tuple(([noise_note] if noise_note else []) + left_out),
        unreadable=tuple(acquisitions.skipped),
    )


class _Sink:
    """The replay's ``send``: images to ``image_<series>`` (and PNGs), acquisitions and
    waveforms to ``data`` and ``waveforms``; anything else is counted."""

    def __init__(self, writer: MrdWriter, png_dir: Path | None) -> None:
        self.writer = writer
        self.png_dir = png_dir
        self.previews: list[Path] = []
        self.image_sets: list[SliceKey] = []
        self.acquisitions = 0
        self.waveforms = 0
        self.other: dict[str, int] = {}

    def __call__(self, item: object) -> None:
        if isinstance(item, ismrmrd.Image):
            self.writer.append_image(f"image_{item.image_series_index}", item)
            key = SliceKey(
                item.slice, item.contrast, item.phase, item.repetition, item.set, item.average
            )
            if key not in self.image_sets:
                self.image_sets.append(key)
            if self.png_dir is not None:
                from gadget.previews import write_preview

                self.previews.append(write_preview(item, self.png_dir))
        elif isinstance(item, ismrmrd.Acquisition):
            self.writer.append_acquisition(item)
            self.acquisitions += 1
        elif isinstance(item, ismrmrd.Waveform):
            self.writer.append_waveform(item)
            self.waveforms += 1
        else:
            name = type(item).__name__
            self.other[name] = self.other.get(name, 0) + 1


def _check_output(output: Path, group: str, overwrite: bool) -> None:
    if not output.exists():
        if not output.parent.is_dir():
            raise ReplayError(f"{output}: its folder {output.parent} does not exist")
        return
    if not h5py.is_hdf5(output):
        raise ReplayError(f"{output}: exists and is not an HDF5 file; not replaced")
    with h5py.File(output, "r") as out:
        if group in out and not overwrite:
            raise ReplayError(f"{output}: group /{group} exists; pass --overwrite to replace it")


def _noise_scans(
    noise: Path | None, survey: Survey, limits: GridLimits | None
) -> tuple[list[ismrmrd.Acquisition], str | None]:
    """The noise file's scans to feed ahead of the input (none if the input has its own)."""
    if noise is None:
        return [], None
    from gadget.noise_file import read_noise_file

    try:
        scans = read_noise_file(noise, limits=limits)
    except InputError as error:
        raise ReplayError(str(error)) from None
    if survey.noise:
        note = f"{noise}: not used, the input has {survey.noise} noise scans of its own"
        log.warning(note)
        return [], note
    channels = scans[0].active_channels
    odd = sorted(c for c in survey.channels if c != channels)
    if odd:
        raise ReplayError(
            f"{noise}: noise scans of {channels} channels, but the input's acquisitions have "
            f"{odd}; expected the same receiver channels"
        )
    log.info("feeding %d noise scans from %s ahead of the input", len(scans), noise)
    return scans, None


def _load_reconstructor(config: GadgetConfig, bars: ReplayProgress) -> Reconstructor:
    """The diffusion reconstructor with a progress bar over its sampler steps; a missing device
    or checkpoint is a ReplayError (exit 2), found before any output is written."""
    from gadget.recon import DiffusionReconstructor

    try:
        return DiffusionReconstructor.from_config(config, progress=bars.sampling)
    except (RuntimeError, ValueError, OSError) as error:
        raise ReplayError(str(error)) from None


class _Bounded:
    """A reconstructor that first refuses a slice whose samples are too large for float32
    arithmetic (their squares and sums overflow), naming the line; the slice then fails like
    any other, and its raw lines are kept."""

    def __init__(self, reconstructor: Reconstructor) -> None:
        self.reconstructor = reconstructor

    def __call__(self, assembled: AssembledSlice) -> Reconstruction:
        peak = float(assembled.kspace.abs().max()) if assembled.kspace.numel() else 0.0
        if peak > MAX_SAMPLE_MAGNITUDE:
            line = max(
                (a for a in assembled.source if isinstance(a, ismrmrd.Acquisition)),
                key=lambda a: float(np.abs(a.data).max()),
            )
            raise AssemblyError(
                f"line {line.idx.kspace_encode_step_1} (scan_counter {line.scan_counter}) has "
                f"samples of magnitude {float(np.abs(line.data).max()):.3g}; expected at most "
                f"{MAX_SAMPLE_MAGNITUDE:.0e} (float32 k-space arithmetic overflows beyond)"
            )
        return self.reconstructor(assembled)


class _Source:
    """The noise file's scans, then the input's acquisitions; one that cannot be read (its samples
    do not match its header) is skipped and named in ``skipped``, and the rest goes on."""

    def __init__(self, first: list[ismrmrd.Acquisition], reader: AcquisitionReader) -> None:
        self.first = first
        self.reader = reader
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.first) + len(self.reader)

    def __iter__(self) -> Iterator[ismrmrd.Acquisition]:
        yield from self.first
        for index in range(len(self.reader)):
            try:
                yield self.reader.read(index)
            except InputError as error:
                log.error("skipping: %s", error)
                self.skipped.append(str(error))


def _keep_the_rest(
    node: h5py.Group, sink: _Sink, survey: Survey, run: RunSummary
) -> tuple[list[str], list[str]]:
    """Copy the input's waveforms, images and other datasets into the output; one line per
    kind of what was kept and of what was left out."""
    from gadget.input_extras import copy_input_extras

    kept, left_out = copy_input_extras(node, sink.writer)
    if sink.acquisitions:
        kept.insert(0, f"{sink.acquisitions} raw acquisitions not reconstructed -> /data")
    if sink.waveforms:
        kept.insert(0, f"{sink.waveforms} waveforms passed on -> /waveforms")
    for name, count in sink.other.items():
        left_out.append(f"{count} {name} items passed on by the gadget: no ISMRMRD file layout")
    if survey.noise:
        scans = "noise scan" if survey.noise == 1 else "noise scans"
        left_out.append(f"{survey.noise} {scans}: used for prewhitening, not copied")
    if run.slices_done:
        left_out.append("the acquisitions of reconstructed slices: they are in the input")
    return kept, left_out


def _move_into_place(partial: Path, output: Path, group: str) -> None:
    """The finished temporary file becomes ``output``, or its group is copied into it."""
    if not output.exists():
        os.replace(partial, output)
        return
    with h5py.File(partial, "r") as source, h5py.File(output, "a") as target:
        if group in target:
            del target[group]
        source.copy(source[group], target, name=group)
