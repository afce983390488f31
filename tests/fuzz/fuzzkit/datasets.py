"""ISMRMRD files to start from, and mutations of their header, acquisitions and HDF5 bytes.

Base files: ``ismrmrd_generate_cartesian_shepp_logan`` (32 x 32, 4 coils, R = 2, 12 ACS lines,
a noise scan, readout oversampling 2, 2 repetitions) and a tiny one written with ismrmrd-python
(its first repetition, 2 coils). Each mutation family takes a ``random.Random`` and writes one
file; the returned name is the case's reproducer (family: what was changed).
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import ismrmrd
import numpy as np

NS = "http://www.ismrm.org/ISMRMRD"
ET.register_namespace("", NS)


@dataclass(frozen=True)
class BaseFile:
    name: str
    path: Path
    xml: bytes
    acquisitions: tuple[ismrmrd.Acquisition, ...]


def read_file(name: str, path: Path) -> BaseFile:
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False, mode="r") as d:
        xml = d.read_xml_header()
        acqs = tuple(d.read_acquisition(i) for i in range(d.number_of_acquisitions()))
    return BaseFile(name, path, xml, acqs)


def write_file(path: Path, xml: bytes, acquisitions: list[ismrmrd.Acquisition]) -> None:
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as d:
        d.write_xml_header(xml)
        for a in acquisitions:
            d.append_acquisition(a)


def base_files(folder: Path) -> list[BaseFile]:
    """The Shepp-Logan file of ismrmrd-tools and the tiny ismrmrd-python one."""
    folder.mkdir(parents=True, exist_ok=True)
    phantom = folder / "shepp_logan.h5"
    if not phantom.exists():
        subprocess.run(
            ["ismrmrd_generate_cartesian_shepp_logan", "-m", "32", "-c", "4", "-a", "2",
             "-w", "12", "-n", "0.02", "-C", "-o", str(phantom)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    sl = read_file("shepp_logan", phantom)
    tiny = folder / "tiny.h5"
    if not tiny.exists():
        xml = re.sub(rb"<receiverChannels>\d+<", b"<receiverChannels>2<", sl.xml)
        lines = []
        for a in sl.acquisitions:
            if a.idx.repetition == 0:
                head = a.getHead()
                head.active_channels = head.available_channels = 2
                lines.append(ismrmrd.Acquisition(head, a.data[:2].copy()))
        write_file(tiny, xml, lines)
    return [sl, read_file("tiny", tiny)]


# ---- header mutations -----------------------------------------------------------------------


def _edit_xml(xml: bytes, edit: Callable[[ET.Element], str]) -> tuple[bytes, str]:
    root = ET.fromstring(xml)
    what = edit(root)
    return ET.tostring(root, xml_declaration=True, encoding="utf-8"), what


def _q(path: str) -> str:
    return "/".join(f"{{{NS}}}{p}" for p in path.split("/"))


MATRIX_VALUES = ["0", "1", "3", "4096", "65535", "2147483648", "-1", "1.5", "abc", "", "1e30"]
MISSING = [
    "encoding", "encoding/encodedSpace", "encoding/reconSpace", "encoding/encodedSpace/matrixSize",
    "encoding/reconSpace/matrixSize", "encoding/encodedSpace/matrixSize/y",
    "encoding/reconSpace/matrixSize/x", "encoding/encodingLimits",
    "encoding/encodingLimits/kspace_encoding_step_1", "encoding/trajectory",
    "acquisitionSystemInformation", "acquisitionSystemInformation/receiverChannels",
    "encoding/encodedSpace/fieldOfView_mm", "encoding/parallelImaging",
]  # fmt: skip


def header_matrix(base: BaseFile, rng: random.Random) -> tuple[bytes, list, str]:
    space = rng.choice(["encodedSpace", "reconSpace"])
    axis = rng.choice("xyz")
    value = rng.choice(MATRIX_VALUES)

    def edit(root: ET.Element) -> str:
        root.find(_q(f"encoding/{space}/matrixSize/{axis}")).text = value  # type: ignore[union-attr]
        return f"{space} matrixSize {axis}={value!r}"

    xml, what = _edit_xml(base.xml, edit)
    return xml, list(base.acquisitions), what


def header_channels(base: BaseFile, rng: random.Random) -> tuple[bytes, list, str]:
    value = rng.choice(["0", "1", "65535", "-2", "x", "3"])

    def edit(root: ET.Element) -> str:
        root.find(_q("acquisitionSystemInformation/receiverChannels")).text = value  # type: ignore[union-attr]
        return f"receiverChannels={value!r}"

    xml, what = _edit_xml(base.xml, edit)
    return xml, list(base.acquisitions), what


def header_missing(base: BaseFile, rng: random.Random) -> tuple[bytes, list, str]:
    path = rng.choice(MISSING)

    def edit(root: ET.Element) -> str:
        parent_path, _, leaf = path.rpartition("/")
        parent = root if not parent_path else root.find(_q(parent_path))
        element = None if parent is None else parent.find(_q(leaf))
        if parent is not None and element is not None:
            parent.remove(element)
        return f"without {path}"

    xml, what = _edit_xml(base.xml, edit)
    return xml, list(base.acquisitions), what


def header_limits(base: BaseFile, rng: random.Random) -> tuple[bytes, list, str]:
    field_ = rng.choice(["maximum", "center", "minimum"])
    value = rng.choice(["0", "65535", "-1", "40", "x"])

    def edit(root: ET.Element) -> str:
        node = root.find(_q(f"encoding/encodingLimits/kspace_encoding_step_1/{field_}"))
        if node is not None:
            node.text = value
        return f"kspace_encoding_step_1 {field_}={value!r}"

    xml, what = _edit_xml(base.xml, edit)
    return xml, list(base.acquisitions), what


def header_malformed(base: BaseFile, rng: random.Random) -> tuple[bytes, list, str]:
    kind = rng.choice(["truncated", "empty", "not xml", "binary", "other root", "radial"])
    if kind == "truncated":
        at = rng.randrange(1, len(base.xml))
        return base.xml[:at], list(base.acquisitions), f"xml cut at byte {at}"
    if kind == "radial":
        xml = base.xml.replace(b">cartesian<", b">radial<")
        return xml, list(base.acquisitions), "trajectory radial"
    xml = {"empty": b"", "not xml": b"hello", "binary": bytes(range(1, 256)),
           "other root": b"<configuration/>"}[kind]  # fmt: skip
    return xml, list(base.acquisitions), f"xml {kind}"


# ---- acquisition mutations ------------------------------------------------------------------

FLAGS = [
    ismrmrd.ACQ_IS_NOISE_MEASUREMENT, ismrmrd.ACQ_LAST_IN_SLICE, ismrmrd.ACQ_FIRST_IN_SLICE,
    ismrmrd.ACQ_IS_NAVIGATION_DATA, ismrmrd.ACQ_IS_PARALLEL_CALIBRATION, ismrmrd.ACQ_IS_REVERSE,
    ismrmrd.ACQ_IS_DUMMYSCAN_DATA, ismrmrd.ACQ_IS_PHASECORR_DATA, ismrmrd.ACQ_LAST_IN_MEASUREMENT,
]  # fmt: skip
COUNTERS = ["kspace_encode_step_1", "kspace_encode_step_2", "slice", "repetition", "contrast",
            "average", "phase", "set", "segment"]  # fmt: skip


def _copy(acq: ismrmrd.Acquisition) -> ismrmrd.Acquisition:
    traj = acq.traj.copy() if acq.trajectory_dimensions else None
    return ismrmrd.Acquisition(acq.getHead(), acq.data.copy(), traj)


def _imaging(acqs: list[ismrmrd.Acquisition]) -> list[int]:
    return [i for i, a in enumerate(acqs) if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]


def _noise(acqs: list[ismrmrd.Acquisition]) -> list[int]:
    return [i for i, a in enumerate(acqs) if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]


def acq_flags(base: BaseFile, rng: random.Random) -> tuple[bytes, list, str]:
    acqs = [_copy(a) for a in base.acquisitions]
    kind = rng.choice(["set", "clear", "clear last everywhere", "random bits"])
    i = rng.choice(_imaging(acqs))
    if kind == "set":
        flag = rng.choice(FLAGS)
        acqs[i].set_flag(flag)
        return base.xml, acqs, f"acquisition {i} flag {flag} set"
    if kind == "clear":
        flag = rng.choice(FLAGS)
        acqs[i].clear_flag(flag)
        return base.xml, acqs, f"acquisition {i} flag {flag} cleared"
    if kind == "random bits":
        acqs[i].flags = rng.getrandbits(64)
        return base.xml, acqs, f"acquisition {i} flags={acqs[i].flags:#x}"
    for a in acqs:
        a.clear_flag(ismrmrd.ACQ_LAST_IN_SLICE)
    return base.xml, acqs, "no ACQ_LAST_IN_SLICE anywhere"


def acq_counters(base: BaseFile, rng: random.Random) -> tuple[bytes, list, str]:
    acqs = [_copy(a) for a in base.acquisitions]
    i = rng.choice(_imaging(acqs))
    name = rng.choice([*COUNTERS, "center_sample", "discard_pre", "discard_post"])
    value = rng.choice([1, 31, 32, 33, 64, 1000, 65535])
    if name in COUNTERS:
        setattr(acqs[i].idx, name, value)
    else:
        setattr(acqs[i], name, value)
    return base.xml, acqs, f"acquisition {i} {name}={value}"


def acq_samples(base: BaseFile, rng: random.Random) -> tuple[bytes, list, str]:
    acqs = [_copy(a) for a in base.acquisitions]
    which = rng.choice(["imaging", "noise"]) if _noise(acqs) else "imaging"
    i = rng.choice(_imaging(acqs) if which == "imaging" else _noise(acqs))
    value = rng.choice([np.nan, np.inf, -np.inf, 1e30, 0.0])
    everywhere = rng.random() < 0.3
    data = acqs[i].data
    if everywhere:
        data[:] = value
    else:
        data[rng.randrange(data.shape[0]), rng.randrange(data.shape[1])] = value
    return (
        base.xml,
        acqs,
        f"{which} acquisition {i} {'all samples' if everywhere else 'one sample'}={value}",
    )


def acq_timing(base: BaseFile, rng: random.Random) -> tuple[bytes, list, str]:
    acqs = [_copy(a) for a in base.acquisitions]
    i = rng.choice(range(len(acqs)))
    value = rng.choice([float("nan"), 0.0, -1.0, float("inf"), 1e30])
    acqs[i].sample_time_us = value
    return base.xml, acqs, f"acquisition {i} sample_time_us={value}"


def acq_shape(base: BaseFile, rng: random.Random) -> tuple[bytes, list, str]:
    acqs = [_copy(a) for a in base.acquisitions]
    i = rng.choice(range(len(acqs)))
    a = acqs[i]
    channels = rng.choice([a.active_channels, 1, a.active_channels + 1])
    samples = rng.choice(
        [a.number_of_samples, 0, 1, a.number_of_samples // 2, a.number_of_samples + 7]
    )
    traj = rng.choice([0, 0, 2])
    head = a.getHead()
    head.active_channels, head.available_channels = channels, channels
    head.number_of_samples, head.trajectory_dimensions = samples, traj
    data = (np.arange(channels * samples, dtype=np.float32).reshape(channels, samples)).astype(
        np.complex64
    )
    t = np.zeros((samples, traj), dtype=np.float32) if traj else None
    acqs[i] = ismrmrd.Acquisition(head, data, t)
    return base.xml, acqs, f"acquisition {i} {channels} channels x {samples} samples, traj {traj}"


def acq_order(base: BaseFile, rng: random.Random) -> tuple[bytes, list, str]:
    acqs = [_copy(a) for a in base.acquisitions]
    kind = rng.choice(
        ["shuffle", "duplicate", "drop", "drop noise", "reverse", "only noise", "none"]
    )
    if kind == "shuffle":
        rng.shuffle(acqs)
    elif kind == "duplicate":
        i = rng.randrange(len(acqs))
        acqs.insert(i, _copy(acqs[i]))
    elif kind == "drop":
        del acqs[rng.randrange(len(acqs))]
    elif kind == "drop noise":
        acqs = [acqs[i] for i in _imaging(acqs)]
    elif kind == "reverse":
        acqs.reverse()
    elif kind == "only noise":
        acqs = [acqs[i] for i in _noise(acqs)]
    else:
        acqs = []
    return base.xml, acqs, f"acquisitions {kind}"


# ---- HDF5-level mutations of a written file ---------------------------------------------------


def _xml_dataset(path: Path, rng: random.Random) -> str:
    kind = rng.choice(["0 entries", "group", "integers", "2 entries", "missing data"])
    with h5py.File(path, "a") as f:
        if kind == "missing data":
            del f["dataset/data"]
            return kind
        xml = f["dataset/xml"][0]
        del f["dataset/xml"]
        if kind == "0 entries":
            f["dataset"].create_dataset("xml", shape=(0,), dtype=h5py.special_dtype(vlen=bytes))
        elif kind == "group":
            f["dataset"].create_group("xml")
        elif kind == "integers":
            f["dataset"].create_dataset("xml", data=np.arange(4))
        else:
            f["dataset"].create_dataset(
                "xml", data=[xml, xml], dtype=h5py.special_dtype(vlen=bytes)
            )
    return f"/dataset/xml {kind}"


def _truncate_data(path: Path, rng: random.Random) -> str:
    with h5py.File(path, "a") as f:
        data = f["dataset/data"]
        keep = rng.randrange(0, data.shape[0])
        data.resize((keep,))
    return f"/dataset/data resized to {keep} entries"


def _file_bytes(path: Path, rng: random.Random) -> str:
    raw = bytearray(path.read_bytes())
    if rng.random() < 0.3:
        at = rng.randrange(len(raw))
        path.write_bytes(bytes(raw[:at]))
        return f"file cut at byte {at} of {len(raw)}"
    positions = sorted(rng.randrange(len(raw)) for _ in range(rng.choice([1, 4, 32])))
    for p in positions:
        raw[p] = rng.randrange(256)
    path.write_bytes(bytes(raw))
    return f"bytes {positions[:8]}{'...' if len(positions) > 8 else ''} overwritten"


AcqMutation = Callable[[BaseFile, random.Random], tuple[bytes, list, str]]
HEADER_FAMILIES: dict[str, AcqMutation] = {
    "header-matrix": header_matrix,
    "header-channels": header_channels,
    "header-missing": header_missing,
    "header-limits": header_limits,
    "header-malformed": header_malformed,
}
ACQ_FAMILIES: dict[str, AcqMutation] = {
    "acq-flags": acq_flags,
    "acq-counters": acq_counters,
    "acq-samples": acq_samples,
    "acq-timing": acq_timing,
    "acq-shape": acq_shape,
    "acq-order": acq_order,
}
HDF5_FAMILIES: dict[str, Callable[[Path, random.Random], str]] = {
    "xml-dataset": _xml_dataset,
    "truncated-data": _truncate_data,
    "file-bytes": _file_bytes,
}
FILE_FAMILIES = [*HEADER_FAMILIES, *ACQ_FAMILIES, *HDF5_FAMILIES]


def mutated_file(base: BaseFile, family: str, seed: int, path: Path) -> str:
    """Write ``base`` mutated by ``family`` (seeded) to ``path``; return the case's name."""
    rng = random.Random(seed)
    if family in HDF5_FAMILIES:
        shutil.copyfile(base.path, path)
        what = HDF5_FAMILIES[family](path, rng)
    else:
        xml, acqs, what = {**HEADER_FAMILIES, **ACQ_FAMILIES}[family](base, rng)
        write_file(path, xml, acqs)
    return f"{family}: {base.name}, {what} (seed {seed})"
