"""Noise scans from a separate ISMRMRD file (a Siemens-style noise dependency measurement).

On Siemens systems the noise scan is usually its own measurement, converted to its own ISMRMRD
file, rather than the first lines of the imaging stream. :func:`read_noise_acquisitions` reads
its noise lines once; :func:`prepend_noise` feeds them ahead of a stream that has no noise scan
of its own, where ``gadget.stream.noise_adjustment`` takes them like in-stream noise scans.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import ismrmrd

log = logging.getLogger(__name__)


class NoiseFileError(ValueError):
    """A noise file that cannot be used (the message names the file and what was expected)."""


def read_noise_acquisitions(path: Path | str, group: str = "dataset") -> list[ismrmrd.Acquisition]:
    """The acquisitions flagged ACQ_IS_NOISE_MEASUREMENT in ``path``:/``group``, in file order.

    Raises NoiseFileError when the file or group cannot be read, holds no noise lines, or its
    noise lines disagree in their channel count.
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            if not isinstance(handle.get(f"{group}/data"), h5py.Dataset):
                raise NoiseFileError(f"{path}: no ISMRMRD acquisitions at /{group}/data")
    except OSError as error:
        raise NoiseFileError(f"{path}: cannot open as HDF5 ({error})") from None
    with ismrmrd.Dataset(str(path), group, create_if_needed=False, mode="r") as dataset:
        count = dataset.number_of_acquisitions()
        noise = [
            acquisition
            for acquisition in (dataset.read_acquisition(i) for i in range(count))
            if acquisition.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        ]
    if not noise:
        raise NoiseFileError(
            f"{path}:/{group}: none of its {count} acquisitions is flagged "
            "ACQ_IS_NOISE_MEASUREMENT; expected a noise (dependency) measurement"
        )
    channels = {a.active_channels for a in noise}
    if len(channels) > 1:
        raise NoiseFileError(f"{path}:/{group}: noise lines with {sorted(channels)} channels")
    log.info("%s: %d noise lines of %d channels", path, len(noise), channels.pop())
    return noise


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
