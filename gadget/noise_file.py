"""Noise scans from a separate ISMRMRD file (e.g. a Siemens noise dependency measurement).

On Siemens scanners the noise scan is usually its own measurement; converted to ISMRMRD it is a
file whose acquisitions are flagged ACQ_IS_NOISE_MEASUREMENT. Fed ahead of an imaging stream
that has no noise scan of its own, they give the gadget its noise covariance (prewhitening).
:func:`read_noise_file` reads them once (``replay --noise``, ``serve --noise``);
:func:`prepend_noise` feeds them ahead of a stream, where ``gadget.stream.noise_adjustment`` takes
them like in-stream noise scans.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import ismrmrd
import numpy as np

from gadget.geometry import GridLimits
from gadget.mrd_input import AcquisitionReader, InputError, dataset_group, open_hdf5

log = logging.getLogger(__name__)


def read_noise_file(
    path: Path, group: str = "dataset", limits: GridLimits | None = None
) -> list[ismrmrd.Acquisition]:
    """The noise scans of ``path`` (acquisitions flagged ACQ_IS_NOISE_MEASUREMENT), in file order.

    Raises InputError naming the file and the acquisition when the file is not ISMRMRD, holds no
    noise scan, or its noise scans disagree on the channel count or hold non-finite samples.
    """
    with open_hdf5(path, "noise file") as file:
        node = dataset_group(file, path, group)
        reader = AcquisitionReader.of_group(node, path, limits or GridLimits())
        scans = []
        for index, head in reader.heads():
            if int(head["flags"]) & (1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1)):
                scans.append(reader.read(index))
                _check(scans, index, reader.where)
    if not scans:
        raise InputError(
            f"{path}:/{group}/data: no acquisition is flagged ACQ_IS_NOISE_MEASUREMENT; "
            "expected a noise measurement"
        )
    log.info("%s: %d noise scans of %d channels", path, len(scans), scans[0].active_channels)
    return scans


def _check(scans: list[ismrmrd.Acquisition], index: int, where: str) -> None:
    latest = scans[-1]
    if latest.active_channels != scans[0].active_channels:
        raise InputError(
            f"{where}: noise scan at acquisition {index} has {latest.active_channels} channels, "
            f"expected {scans[0].active_channels} like the first noise scan"
        )
    if not np.isfinite(latest.data).all():
        raise InputError(f"{where}: noise scan at acquisition {index} has NaN or infinite samples")


def prepend_noise(
    items: Iterable[object], noise: Sequence[ismrmrd.Acquisition]
) -> Iterator[object]:
    """``items`` with ``noise`` ahead of its first acquisition, unless the stream brings its own
    noise scan (its first acquisition is one) or its channel count differs (logged)."""
    iterator = iter(items)
    for item in iterator:
        if isinstance(item, ismrmrd.Acquisition) and noise:
            if item.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
                log.info("the stream has its own noise scan; the noise file is not used")
            elif item.active_channels != noise[0].active_channels:
                log.warning(
                    "noise file not used: %d channels, the stream's acquisitions have %d",
                    noise[0].active_channels,
                    item.active_channels,
                )
            else:
                log.info(
                    "no noise scan in the stream: using %d lines of the noise file", len(noise)
                )
                yield from noise
            yield item
            yield from iterator
            return
        yield item
