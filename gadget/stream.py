"""First stages of the pipeline: keep what the gadget reconstructs, measure the noise.

Each stage is a generator over the previous one, so the handler reads like
``acquisitions -> noise adjustment -> grouping -> assembly -> reconstruction -> images``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

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


def _unhandled_reason(item: object) -> str | None:
    """Why the gadget forwards ``item`` unchanged, or None if it reconstructs it."""
    if not isinstance(item, ismrmrd.Acquisition):
        return type(item).__name__
    if item.trajectory_dimensions > 0:
        return "non-Cartesian acquisition (has a trajectory)"
    for flag, name in _NOT_IMAGING.items():
        if item.is_flag_set(flag):
            return f"{name} acquisition"
    return None


def cartesian_acquisitions(
    items: Iterable[object], forward: Callable[[object], None]
) -> Iterator[ismrmrd.Acquisition]:
    """Yield the Cartesian imaging and noise acquisitions; ``forward`` everything else unchanged.

    The first item of each forwarded kind is logged (INFO), the rest counted at the end.
    """
    forwarded: dict[str, int] = {}
    for item in items:
        reason = _unhandled_reason(item)
        if reason is None:
            yield item
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
    """

    covariance: torch.Tensor
    dwell_time_us: float

    def for_dwell_time(self, dwell_time_us: float) -> torch.Tensor:
        """Covariance of one sample acquired with ``dwell_time_us`` (noise power ~ 1 / dwell time)."""
        if dwell_time_us <= 0 or self.dwell_time_us <= 0:
            return self.covariance
        return self.covariance * (self.dwell_time_us / dwell_time_us)


def noise_adjustment(
    acquisitions: Iterable[ismrmrd.Acquisition],
) -> Iterator[tuple[ismrmrd.Acquisition, NoiseStatistics | None]]:
    """Consume noise scans (ACQ_IS_NOISE_MEASUREMENT); yield each other acquisition with the
    noise statistics of the scans that came before it (None when there were none).

    The covariance comes from :func:`diffusion_core.noise.noise_covariance` over all noise samples.
    Noise scans are not passed on: they hold no image data.
    """
    samples: list[np.ndarray] = []
    dwell = 0.0
    statistics: NoiseStatistics | None = None
    for acquisition in acquisitions:
        if acquisition.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            if samples and acquisition.active_channels != samples[0].shape[0]:
                raise ValueError(
                    f"noise scan {acquisition.scan_counter}: {acquisition.active_channels} channels, "
                    f"expected {samples[0].shape[0]} like the noise scans before it"
                )
            samples.append(np.array(acquisition.data, dtype=np.complex64))
            dwell = float(acquisition.sample_time_us)
            statistics = None
            continue
        if samples and statistics is None:
            statistics = _statistics(np.concatenate(samples, axis=1), dwell)
            samples = [] if statistics is None else samples
        yield acquisition, statistics


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
    return NoiseStatistics(covariance, dwell_time_us)
