"""First stages of the pipeline: keep what the gadget reconstructs, measure the noise.

Each stage is a generator over the previous one, so the handler reads like
``acquisitions -> noise adjustment -> grouping -> assembly -> reconstruction -> images``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, cast

import ismrmrd
import numpy as np
import torch

log = logging.getLogger(__name__)

# Lines that carry no image data for this reconstruction; they are forwarded unchanged.
_NOT_IMAGING = {
    ismrmrd.ACQ_IS_NAVIGATION_DATA: "navigator",
    ismrmrd.ACQ_IS_PHASECORR_DATA: "phase-correction",
    ismrmrd.ACQ_IS_HPFEEDBACK_DATA: "HP feedback",
    ismrmrd.ACQ_IS_DUMMYSCAN_DATA: "dummy scan",
    ismrmrd.ACQ_IS_RTFEEDBACK_DATA: "RT feedback",
    ismrmrd.ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA: "surface-coil correction",
    ismrmrd.ACQ_IS_PHASE_STABILIZATION_REFERENCE: "phase stabilisation reference",
    ismrmrd.ACQ_IS_PHASE_STABILIZATION: "phase stabilisation",
}


class Line(NamedTuple):
    """An acquisition and its place in the stream (0-based, counting every acquisition)."""

    stream_index: int
    acquisition: ismrmrd.Acquisition

    def describe(self) -> str:
        """``acquisition 12 (kspace_encode_step_1=5, slice=0, ...)`` for error messages."""
        idx = self.acquisition.idx
        counters = ", ".join(
            f"{name}={getattr(idx, name)}"
            for name in (
                "kspace_encode_step_1",
                "slice",
                "contrast",
                "phase",
                "repetition",
                "set",
                "average",
            )
        )
        return f"acquisition {self.stream_index} ({counters})"


def _unhandled_reason(item: object) -> str | None:
    """Why the gadget forwards ``item`` unchanged, or None if it reconstructs it."""
    if not isinstance(item, ismrmrd.Acquisition):
        return type(item).__name__
    if item.trajectory_dimensions > 0 and not _cartesian_line(item):
        return "non-Cartesian acquisition (its trajectory is not a line along the readout)"
    for flag, name in _NOT_IMAGING.items():
        if item.is_flag_set(flag):
            return f"{name} acquisition"
    if item.encoding_space_ref != 0 and not item.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
        # Another <encoding> of the header (another matrix, FOV or trajectory): placing its lines
        # on encoding 0's grid would mix two acquisitions into one slice.
        return f"acquisition of encoding space {item.encoding_space_ref}, not encoding space 0"
    return None


def _cartesian_line(acquisition: ismrmrd.Acquisition) -> bool:
    """True when the stored k-space coordinates describe one Cartesian readout line: the first
    (readout) coordinate runs monotonically and every other one is the same for all samples.
    The header's encoding is Cartesian (checked before any data are read), so such a line is
    placed by its encoding counters, as Gadgetron's Cartesian chains do; the coordinates are
    not used."""
    traj = np.asarray(acquisition.traj, dtype=np.float64)
    if traj.ndim != 2 or traj.shape[0] == 0 or not np.isfinite(traj).all():
        return False
    step = np.diff(traj[:, 0])
    if step.size and not (np.all(step > 0) or np.all(step < 0)):
        return False
    scale = max(float(np.ptp(traj[:, 0])), 1e-12)
    return bool(np.all(np.ptp(traj[:, 1:], axis=0) <= 1e-6 * scale))


def unpack_buckets(items: Iterable[object]) -> Iterator[object]:
    """Gadgetron AcquisitionBuckets replaced by what they hold (reference lines, data lines,
    waveforms, in that order), so their lines are reconstructed and nothing needs a bucket writer;
    an empty bucket yields nothing. Other items pass unchanged."""
    from gadgetron.types.acquisition_bucket import AcquisitionBucket

    for item in items:
        if isinstance(item, AcquisitionBucket):
            yield from item.ref
            yield from item.data
            yield from item.waveforms
        else:
            yield item


def cartesian_acquisitions(
    items: Iterable[object], forward: Callable[[object], None]
) -> Iterator[Line]:
    """Yield the Cartesian imaging and noise acquisitions with their stream index; ``forward``
    everything else unchanged, in order.

    The first item of each forwarded kind is logged (INFO), the rest counted at the end.
    """
    forwarded: dict[str, int] = {}
    index = 0
    placed_by_counters = False
    for item in unpack_buckets(items):
        reason = _unhandled_reason(item)
        if isinstance(item, ismrmrd.Acquisition):
            index += 1
        if reason is None:
            item = cast(ismrmrd.Acquisition, item)  # _unhandled_reason passes acquisitions only
            if item.trajectory_dimensions > 0 and not placed_by_counters:
                placed_by_counters = True
                log.info(
                    "acquisitions carry k-space coordinates; the encoding is Cartesian, so each "
                    "line is placed by its encoding counters and the coordinates are not used"
                )
            yield Line(index - 1, item)
            continue
        if reason not in forwarded:
            log.info("passing on unchanged: %s (not reconstructed by this gadget)", reason)
        forwarded[reason] = forwarded.get(reason, 0) + 1
        forward(item)
    if forwarded:
        log.info("passed on unchanged: %s", ", ".join(f"{n} x {k}" for k, n in forwarded.items()))


@dataclass(frozen=True)
class NoiseStatistics:
    """Receiver noise measured by the noise scans of a stream.

    Attributes:
        covariance: (coils, coils) complex64 covariance of one noise sample.
        dwell_time_us: sample dwell time of the noise scans.
        note: how it was measured (for logs and image meta).
    """

    covariance: torch.Tensor
    dwell_time_us: float
    note: str = ""

    def for_dwell_time(self, dwell_time_us: float) -> torch.Tensor:
        """Covariance of one sample acquired with ``dwell_time_us`` (noise power ~ 1 / dwell time)."""
        if not (_usable_dwell(dwell_time_us) and _usable_dwell(self.dwell_time_us)):
            return self.covariance  # an unknown dwell time: the noise scan's covariance as it is
        return self.covariance * (self.dwell_time_us / dwell_time_us)


def _usable_dwell(dwell_time_us: float) -> bool:
    return math.isfinite(dwell_time_us) and dwell_time_us > 0


class NoiseState(NamedTuple):
    """The noise known when a line arrives: statistics, or None and the reason (``note``)."""

    statistics: NoiseStatistics | None
    note: str


NO_NOISE_SCAN = NoiseState(None, "not prewhitened: no noise scan before the data")


def _bad_noise_scan(line: Line, channels: int | None) -> str | None:
    """Why a noise scan cannot be used, or None."""
    acquisition = line.acquisition
    if acquisition.number_of_samples == 0 or acquisition.active_channels == 0:
        return f"{acquisition.number_of_samples} samples x {acquisition.active_channels} channels"
    data = acquisition.data
    if not np.isfinite(data).all():
        return f"{int((~np.isfinite(data)).sum())} non-finite (NaN or infinite) samples"
    if channels is not None and acquisition.active_channels != channels:
        return f"{acquisition.active_channels} channels, expected {channels} like the noise scans before it"
    return None


def noise_adjustment(lines: Iterable[Line]) -> Iterator[tuple[Line, NoiseState]]:
    """Consume noise scans (ACQ_IS_NOISE_MEASUREMENT); yield each other line with the noise
    known when it arrived.

    A noise scan with no samples, non-finite samples or another channel count than the scans
    before it is dropped with a warning; when none is usable the data are reconstructed without
    prewhitening and the state says why. The covariance comes from
    :func:`diffusion_core.noise.noise_covariance` over all usable noise samples. Noise scans are
    not passed on: they hold no image data.
    """
    samples: list[np.ndarray] = []
    dropped: list[str] = []
    dwell = 0.0
    state: NoiseState | None = None
    for line in lines:
        acquisition = line.acquisition
        if acquisition.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            reason = _bad_noise_scan(line, samples[0].shape[0] if samples else None)
            if reason is not None:
                log.warning("noise scan %s dropped: %s", line.describe(), reason)
                dropped.append(f"noise scan {line.stream_index} dropped ({reason})")
            else:
                samples.append(np.array(acquisition.data, dtype=np.complex64))
                dwell = float(acquisition.sample_time_us)
            state = None
            continue
        if state is None:
            state = _state(samples, dwell, dropped)
        yield line, state


def _state(samples: list[np.ndarray], dwell_time_us: float, dropped: list[str]) -> NoiseState:
    if not samples:
        if dropped:
            return NoiseState(None, "not prewhitened: " + "; ".join(dropped))
        return NO_NOISE_SCAN
    statistics = _statistics(np.concatenate(samples, axis=1), dwell_time_us)
    if statistics is None:
        return NoiseState(None, "not prewhitened: the noise covariance cannot whiten (singular)")
    return NoiseState(statistics, statistics.note)


def _statistics(samples: np.ndarray, dwell_time_us: float) -> NoiseStatistics | None:
    """Noise statistics of (channels, n) samples; None (with a warning) if they cannot whiten."""
    from diffusion_core.noise import noise_covariance, prewhitening_matrix

    covariance = noise_covariance(torch.from_numpy(samples)).to(torch.complex64)
    try:
        prewhitening_matrix(covariance)
    except ValueError as error:
        log.warning("noise scans ignored, reconstructing without prewhitening: %s", error)
        return None
    log.info("noise covariance from %d samples of %d channels", samples.shape[1], samples.shape[0])
    note = (
        f"prewhitened: noise covariance of {samples.shape[1]} samples x {samples.shape[0]} channels"
    )
    return NoiseStatistics(covariance, dwell_time_us, note)
