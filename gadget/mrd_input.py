"""Read ISMRMRD HDF5 files defensively: every count is checked against the data present and the
limits before anything is allocated, and every error names the file, the dataset and the item.

Used by the replay (its input) and by :mod:`gadget.noise_file` (a separate noise measurement).
"""

from __future__ import annotations

import logging
import math
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
from ismrmrd.hdf5 import acquisition_dtype

from gadget.geometry import GridLimits

log = logging.getLogger(__name__)

HEADER_ROOT = "ismrmrdHeader"
_CHUNK = 4096  # acquisition headers read at a time by the survey


class InputError(ValueError):
    """An ISMRMRD file that cannot be used (the message names the file, dataset and item)."""


def open_hdf5(path: Path, what: str = "input") -> h5py.File:
    """``path`` opened read-only, or InputError saying why it cannot be."""
    if not path.is_file():
        raise InputError(f"{path}: no such file ({what})")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file ({what})")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise InputError(f"{path}: cannot be read as HDF5 ({error})") from None


def dataset_group(file: h5py.File, path: Path, group: str) -> h5py.Group:
    """The ISMRMRD dataset group ``/group`` (with ``xml`` and ``data``), or InputError."""
    try:
        node = file.get(group)
        found = sorted(file.keys())
    except (RuntimeError, KeyError) as error:
        # h5py's words for a damaged root group: "wrong B-tree signature", "Link iteration
        # failed (actual len exceeds EOA)"
        raise InputError(
            f"{path}: its top-level group cannot be read (a damaged HDF5 file: {error}); "
            f"expected an ISMRMRD file with a /{group} dataset group"
        ) from None
    if node is not None and not isinstance(node, h5py.Group):
        raise InputError(
            f"{path}: /{group} is an HDF5 {type(node).__name__.lower()}; expected the group of "
            "an ISMRMRD dataset (holding xml and data)"
        )
    if node is None and group in found:
        raise InputError(
            f"{path}: /{group} is listed but cannot be read (a damaged HDF5 object); expected "
            "an ISMRMRD dataset group there"
        )
    if node is None:
        raise InputError(
            f"{path}: no group /{group}; expected an ISMRMRD dataset group there "
            f"(top-level entries: {found})"
        )
    try:
        missing = [name for name in ("xml", "data") if name not in node]
    except (RuntimeError, KeyError) as error:
        raise InputError(
            f"{path}: /{group} cannot be listed (a damaged HDF5 group: {error}); expected an "
            "ISMRMRD dataset group holding xml and data"
        ) from None
    if missing:
        raise InputError(f"{path}: /{group} is not an ISMRMRD dataset (missing {missing})")
    return node


def member_dataset(group: h5py.Group, name: str, path: Path, expected: str) -> h5py.Dataset:
    """The dataset ``group/name``, or InputError saying it is missing, damaged or not a dataset.

    h5py raises KeyError both for a missing name and for a listed object whose header is damaged
    ("bad version number for datatype message", ...); the message tells them apart."""
    where = f"{path}:{group.name.rstrip('/')}/{name}"
    try:
        node = group[name]
    except KeyError as error:
        if name in group:
            raise InputError(
                f"{where}: cannot be opened, its HDF5 object is damaged ({error.args[0]}); "
                f"expected {expected}"
            ) from None
        raise InputError(f"{where}: missing; expected {expected}") from None
    except (OSError, ValueError, RuntimeError) as error:  # RuntimeError: h5py, damaged B-trees
        raise InputError(f"{where}: cannot be opened ({error}); expected {expected}") from None
    if not isinstance(node, h5py.Dataset):
        raise InputError(f"{where} is an HDF5 {type(node).__name__.lower()}; expected {expected}")
    return node


def _dtype(node: h5py.Dataset, where: str, expected: str) -> np.dtype:
    """``node``'s datatype, or InputError where the file's datatype message is damaged (h5py
    raises UnicodeDecodeError for a damaged compound member name, RuntimeError / OSError for
    other damage)."""
    try:
        return node.dtype
    except (ValueError, RuntimeError, OSError) as error:
        raise InputError(
            f"{where}: its datatype cannot be read (a damaged HDF5 datatype: {error}); "
            f"expected {expected}"
        ) from None


def read_xml(group: h5py.Group, path: Path) -> bytes:
    """The header text of ``group/xml``: a dataset holding one string, as libismrmrd writes it."""
    where = f"{path}:{group.name}/xml"
    node = member_dataset(group, "xml", path, "a dataset of one string (the ISMRMRD header)")
    dtype = _dtype(node, where, "one string (the ISMRMRD header)")
    if dtype.kind not in "OS" or node.shape is None or node.size < 1:
        raise InputError(
            f"{where}: shape {node.shape}, type {dtype}; expected one string (the ISMRMRD header)"
        )
    try:
        value = node[(0,) * node.ndim] if node.ndim else node[()]
    except (OSError, ValueError, RuntimeError) as error:
        raise InputError(
            f"{where}: cannot be read ({error}): the file is damaged; expected the ISMRMRD header"
        ) from None
    text = value.encode() if isinstance(value, str) else bytes(value)
    if not text.strip():
        raise InputError(f"{where} is empty; expected the ISMRMRD XML header")
    return text


def parse_header(xml: bytes, where: str) -> ismrmrd.xsd.ismrmrdHeader:
    """The parsed ISMRMRD header; InputError naming ``where`` if it is not one. Values the schema
    does not allow (a non-integer count, ...) are logged here and rejected where they are used."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as error:
        raise InputError(f"{where} is not well-formed XML ({error})") from None
    if root.tag.rsplit("}", 1)[-1] != HEADER_ROOT:
        raise InputError(f"{where}: root element <{root.tag}>, expected <{HEADER_ROOT}>")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            header = ismrmrd.xsd.CreateFromDocument(xml)
        except TypeError as error:
            missing = re.findall(r"'(\w+)'", str(error))
            raise InputError(
                f"{where}: not a valid ISMRMRD header (required element(s) missing: {missing})"
            ) from None
        except Exception as error:  # xsdata raises several types for schema violations
            detail = " ".join(str(error).split())[:300] or type(error).__name__
            raise InputError(f"{where}: not a valid ISMRMRD header ({detail})") from None
    for warning in caught:
        log.warning("%s: %s", where, " ".join(str(warning.message).split()))
    return header


def with_expectation(message: str) -> str:
    """A header error as a peer reads it: what was wrong and, if not said yet, what was expected."""
    return message if "expected" in message else f"{message}; expected an <{HEADER_ROOT}> document"


def describe(index: int, head: np.void) -> str:
    """``acquisition 12 (scan_counter 0, line 5, slice 0, repetition 1)``: the index in the file
    and the counters (scan_counter alone is 0 on every line of some files)."""
    idx = head["idx"]
    return (
        f"acquisition {index} (scan_counter {int(head['scan_counter'])}, line "
        f"{int(idx['kspace_encode_step_1'])}, slice {int(idx['slice'])}, repetition "
        f"{int(idx['repetition'])})"
    )


@dataclass(frozen=True)
class Survey:
    """What the acquisition headers of a file hold, read before any sample is.

    Attributes:
        count: acquisitions in the file.
        noise: of them, noise scans (ACQ_IS_NOISE_MEASUREMENT).
        channels: the distinct channel counts of the other (imaging) acquisitions.
        lines: distinct phase-encode lines among the imaging acquisitions.
    """

    count: int
    noise: int
    channels: frozenset[int]
    lines: int


class AcquisitionReader:
    """The acquisitions of an ISMRMRD ``data`` dataset, each checked before it is allocated.

    Args:
        dataset: the ``/<group>/data`` compound dataset.
        where: how errors name the file (``path:/dataset/data``).
        limits: the largest channel and sample counts accepted.
    """

    @classmethod
    def of_group(cls, group: h5py.Group, path: Path, limits: GridLimits) -> AcquisitionReader:
        """The reader of ``group/data`` (InputError if it is missing, damaged or not a dataset)."""
        expected = "the compound dataset of ISMRMRD acquisitions"
        dataset = member_dataset(group, "data", path, expected)
        return cls(dataset, f"{path}:{group.name.rstrip('/')}/data", limits)

    def __init__(self, dataset: h5py.Dataset, where: str, limits: GridLimits) -> None:
        if not isinstance(dataset, h5py.Dataset):
            raise InputError(f"{where}: expected the compound dataset of ISMRMRD acquisitions")
        dtype = _dtype(dataset, where, "the compound dataset of ISMRMRD acquisitions")
        if dtype.names is None:
            raise InputError(f"{where}: expected the compound dataset of ISMRMRD acquisitions")
        names = set(dtype.names)
        if not {"head", "data"} <= names:
            raise InputError(f"{where}: fields {sorted(names)}, expected head, traj and data")
        self.dataset = dataset
        self.where = where
        self.limits = limits

    def __len__(self) -> int:
        return int(self.dataset.shape[0]) if self.dataset.shape else 0

    def heads(self) -> Iterator[tuple[int, np.void]]:
        """(index, header) of every acquisition, read a chunk of headers at a time."""
        for start in range(0, len(self), _CHUNK):
            try:
                chunk = self.dataset.fields("head")[start : start + _CHUNK]
            except (OSError, ValueError, KeyError, RuntimeError) as error:
                raise InputError(
                    f"{self.where}: acquisition headers {start}.. cannot be read ({error}): the "
                    "file is damaged; expected readable ISMRMRD acquisition headers"
                ) from None
            for offset, head in enumerate(chunk):
                yield start + offset, head

    def check_head(self, index: int, head: np.void) -> None:
        """InputError naming the acquisition if a count in its header is out of bounds."""
        channels, samples = int(head["active_channels"]), int(head["number_of_samples"])
        dims, dwell = int(head["trajectory_dimensions"]), float(head["sample_time_us"])
        problem = None
        if not 1 <= channels <= self.limits.max_channels:
            problem = f"{channels} channels, expected 1 to {self.limits.max_channels}"
        elif not 1 <= samples <= self.limits.max_matrix:
            problem = f"{samples} samples, expected 1 to {self.limits.max_matrix}"
        elif dims > 3:
            problem = f"{dims} trajectory dimensions, expected 0 to 3"
        elif not math.isfinite(dwell) or dwell < 0:
            problem = f"sample_time_us {dwell}, expected a finite dwell time >= 0"
        if problem:
            raise InputError(f"{self.where}: {describe(index, head)}: {problem}")

    def survey(self) -> Survey:
        """Check every acquisition header (no samples read) and summarise the file."""
        noise, channels, lines = 0, set(), set()
        for index, head in self.heads():
            self.check_head(index, head)
            if int(head["flags"]) & (1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1)):
                noise += 1
            else:
                channels.add(int(head["active_channels"]))
                lines.add(int(head["idx"]["kspace_encode_step_1"]))
        return Survey(len(self), noise, frozenset(channels), len(lines))

    def read(self, index: int) -> ismrmrd.Acquisition:
        """Acquisition ``index``; InputError if its samples do not match its header."""
        row = np.empty(1, dtype=acquisition_dtype)
        try:
            self.dataset.read_direct(row, source_sel=np.s_[index : index + 1])
        except (OSError, ValueError, TypeError, RuntimeError) as error:
            raise InputError(
                f"{self.where}: acquisition {index} cannot be read ({error}): the file is "
                "damaged there; expected an ISMRMRD acquisition"
            ) from None
        head = row[0]["head"]
        self.check_head(index, head)
        channels, samples = int(head["active_channels"]), int(head["number_of_samples"])
        data, traj = row[0]["data"], row[0]["traj"]
        dims = int(head["trajectory_dimensions"])
        if data.size != 2 * channels * samples or traj.size != samples * dims:
            raise InputError(
                f"{self.where}: {describe(index, head)}: its header says {channels} channels x "
                f"{samples} samples (and {dims} trajectory dimensions), so {2 * channels * samples} "
                f"floats of data and {samples * dims} of trajectory; the file holds {data.size} "
                f"and {traj.size}"
            )
        acquisition = ismrmrd.Acquisition(head)
        acquisition.data[:] = data.view(np.complex64).reshape(channels, samples)
        if dims:
            acquisition.traj[:] = traj.reshape(samples, dims)
        return acquisition
