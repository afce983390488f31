"""The gadget as a pipeline of generators, and the rule for failures inside it.

``acquisitions -> noise adjustment -> grouping -> assembly -> (interleaved calibration) ->
reconstruction -> images -> send``

A failure while assembling or reconstructing one slice is logged with the slice's counters and
that slice's raw lines are passed downstream; the stream goes on. When reading the stream fails
(the peer is gone, a message cannot be framed) the items read so far are still processed: the
open slices are reconstructed as at the end of a stream. Either way the handler returns, so the
connection is closed cleanly and Gadgetron is never left waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import ismrmrd

from gadget.assembly import (
    AssemblyError,
    SliceGroup,
    assemble,
    group_slices,
    interleaved_calibration,
)
from gadget.config import GadgetConfig
from gadget.geometry import EncodingGeometry
from gadget.images import ImageMaker
from gadget.recon import Reconstructor
from gadget.stream import cartesian_acquisitions, noise_adjustment

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Connection(Protocol):
    """What a handler needs from a connection (Gadgetron's, the replay's or the MRD server's)."""

    config: Any
    header: Any

    def __iter__(self) -> Iterator[object]: ...

    def send(self, item: object) -> None: ...


@dataclass
class RunSummary:
    """What one run of a handler did; returned to the replay CLI and logged for Gadgetron."""

    images_sent: int = 0
    slices_done: int = 0
    failed: list[str] = field(default_factory=list)
    stream_error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and self.stream_error is None

    def error_text(self) -> str:
        """One message for the peer: what went wrong, after what was done."""
        parts = [f"gadgetron-diffusion: {self.slices_done} slices reconstructed"]
        if self.stream_error is not None:
            parts.append(f"the input stream ended early: {self.stream_error}")
        parts.extend(f"slice failed, raw lines passed on: {failure}" for failure in self.failed)
        return "; ".join(parts)


def each_slice(
    function: Callable[[T], R],
    items: Iterable[T],
    key: Callable[[T], object],
    summary: RunSummary,
    on_failure: Callable[[T], None] | None = None,
) -> Iterator[R]:
    """Apply ``function`` to each item; log and skip (recording it in ``summary``) any that fail,
    handing a failed item to ``on_failure`` (the handlers pass its raw data downstream)."""
    for item in items:
        try:
            yield function(item)
        except ConnectionError:  # the peer is gone (serve's ClientWatch): stop, nothing to send to
            raise
        except Exception as error:  # one slice must not take the stream down
            message = f"slice ({key(item)}): {type(error).__name__}: {error}"
            # bad input (named in the message); FloatingPointError: the sampler met NaN/Inf
            if isinstance(error, AssemblyError | ValueError | FloatingPointError):
                log.error("reconstruction failed, skipping %s", message)
            else:
                log.exception("reconstruction failed, skipping %s", message)
            summary.failed.append(message)
            if on_failure is not None:
                on_failure(item)


class OncePerSource:
    """Send a failed slice's source downstream, a ReconData (the source of several slices) once.

    The slices of one ReconData come one after another, so comparing with the last item sent
    (a reference held, not an ``id``: the id of a freed item is reused by a new one, and a set of
    ids once dropped a later slice's lines as "already sent") is enough and keeps no more than
    one item alive. Acquisitions belong to one slice each and are always sent."""

    def __init__(self, send: Callable[[object], None]) -> None:
        self.send = send
        self.last: object | None = None

    def __call__(self, item: object) -> None:
        if isinstance(item, ismrmrd.Acquisition):
            self.send(item)
        elif item is not self.last:
            self.last = item
            self.send(item)


def run_slices(
    slices: Iterable[Any],
    reconstructor: Reconstructor,
    maker: ImageMaker,
    send: Callable[[object], None],
    summary: RunSummary,
    once: OncePerSource | None = None,
) -> None:
    """Reconstruct assembled slices, send their images (shared by the acquisition and buffer
    handlers); a slice that fails has its source sent through ``once`` (shared with the
    assembly's failures, so a ReconData goes downstream once)."""

    def reconstructed(assembled: Any) -> list[object]:
        started = time.perf_counter()
        images = maker(assembled, reconstructor(assembled))
        log.info("slice (%s) reconstructed in %.1f s", assembled.key, time.perf_counter() - started)
        return images

    pass_on = once or OncePerSource(send)

    def pass_on_source(assembled: Any) -> None:
        for item in assembled.source:
            pass_on(item)

    for images in each_slice(reconstructed, slices, lambda s: s.key, summary, pass_on_source):
        for image in images:
            send(image)
            summary.images_sent += 1
        summary.slices_done += 1


def run_acquisitions(
    connection: Connection,
    config: GadgetConfig,
    geometry: EncodingGeometry,
    reconstructor: Reconstructor,
) -> RunSummary:
    """Reconstruct the raw acquisitions of ``connection`` and send the images back on it."""

    def pass_on_group(group: SliceGroup) -> None:
        for acquisition in group.acquisitions:
            connection.send(acquisition)

    def slices(items: Iterator[object], summary: RunSummary) -> Iterator[Any]:
        acquisitions = cartesian_acquisitions(items, forward=connection.send)
        groups = group_slices(noise_adjustment(acquisitions))
        assembled = each_slice(
            lambda g: assemble(g, geometry), groups, lambda g: g.key, summary, pass_on_group
        )
        return interleaved_calibration(
            assembled, geometry.interleave, geometry.interleaving_dimension
        )

    return _run(connection, slices, reconstructor, ImageMaker(geometry, config))


def run_recon_data(
    connection: Connection,
    config: GadgetConfig,
    geometry: EncodingGeometry,
    reconstructor: Reconstructor,
) -> RunSummary:
    """Reconstruct Gadgetron's buffered ReconData on ``connection`` and send the images back."""
    from gadget.buffers import BufferSlice, assemble_buffer, buffer_slices, recon_data_items

    once = OncePerSource(connection.send)

    def pass_on_data(job: BufferSlice) -> None:
        once(job.data)  # once per ReconData, however many of its slices fail

    def slices(items: Iterator[object], summary: RunSummary) -> Iterator[Any]:
        jobs = buffer_slices(recon_data_items(items, forward=connection.send))
        assembled = each_slice(
            lambda job: assemble_buffer(job, geometry), jobs, str, summary, pass_on_data
        )
        return interleaved_calibration(
            assembled, geometry.interleave, geometry.interleaving_dimension
        )

    return _run(connection, slices, reconstructor, ImageMaker(geometry, config), once)


def _run(
    connection: Connection,
    slices: Callable[[Iterator[object], RunSummary], Iterator[Any]],
    reconstructor: Reconstructor,
    maker: ImageMaker,
    once: OncePerSource | None = None,
) -> RunSummary:
    """Run ``slices(items) -> reconstruct -> images -> send``; an error in the stream itself ends
    the run (logged, recorded), and what is left of the input is passed downstream unchanged."""
    summary = RunSummary()
    items = iter(connection)
    try:
        run_slices(
            slices(_until_broken(items, summary), summary),
            reconstructor,
            maker,
            connection.send,
            summary,
            once,
        )
    except OSError as error:  # the peer is gone: nothing more can be sent to it
        summary.stream_error = f"the connection closed ({type(error).__name__}: {error})"
        log.warning("%s; stopped after %d images", summary.stream_error, summary.images_sent)
    except Exception as error:
        summary.stream_error = f"{type(error).__name__}: {error}"
        log.exception(
            "processing ended early after %d images: %s", summary.images_sent, summary.stream_error
        )
        pass_on(items, connection.send)
    return summary


def _until_broken(items: Iterator[object], summary: RunSummary) -> Iterator[object]:
    """``items`` until they end or reading the next one fails; a failure is recorded and ends
    the stream normally, so the stages after it still process (and flush) what was read."""
    try:
        yield from items
    except Exception as error:  # any reader error: the stream cannot go on, what was read can
        summary.stream_error = f"{type(error).__name__}: {error}"
        log.error("input stream ended early (%s); processing what was read", summary.stream_error)


def pass_on(items: Iterator[object], send: Callable[[object], None]) -> None:
    """Send what is left of a stream downstream unchanged (so nothing is lost and the sender is
    not blocked) until it ends, breaks, or the downstream side is gone."""
    passed = 0
    try:
        for item in items:
            send(item)
            passed += 1
    except Exception as error:
        log.debug("stream closed while passing the rest on: %s", error)
    if passed:
        log.warning("passed %d unprocessed items downstream after the error", passed)
