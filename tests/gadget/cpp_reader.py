"""The C++ ISMRMRD library as a test reader: compiles tests/gadget/cpp/read_ismrmrd.cpp against
Debian's libismrmrd-dev and parses what it prints."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SOURCE = Path(__file__).parent / "cpp" / "read_ismrmrd.cpp"
HDF5_INCLUDE = Path("/usr/include/hdf5/serial")


def compile_reader(directory: Path) -> Path:
    """The compiled reader; skips (with the reason) where g++ or libismrmrd-dev is absent, but
    fails in CI, where scripts/setup_tests.sh installs them."""
    missing = [
        what
        for what, present in (
            ("g++", shutil.which("g++") is not None),
            ("libismrmrd-dev", Path("/usr/include/ismrmrd/dataset.h").is_file()),
        )
        if not present
    ]
    if missing:
        message = f"the C++ ISMRMRD reader needs {missing} (apt-get install libismrmrd-dev g++)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must have them (scripts/setup_tests.sh)")
        pytest.skip(message)
    binary = directory / "read_ismrmrd"
    subprocess.run(
        ["g++", "-O1", "-std=c++17", f"-I{HDF5_INCLUDE}", "-o", str(binary), str(SOURCE), "-lismrmrd"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return binary


@dataclass
class CppView:
    """What the C++ library read from a file."""

    header: dict[str, str]
    acquisitions: list[dict[str, str]] = field(default_factory=list)
    waveforms: list[dict[str, str]] = field(default_factory=list)
    images: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    pixels: dict[tuple[str, int], list[complex]] = field(default_factory=dict)
    meta: dict[tuple[str, int], dict[str, list[str]]] = field(default_factory=dict)


def _fields(words: list[str]) -> dict[str, str]:
    return dict(word.split("=", 1) for word in words if "=" in word)


def read_with_cpp(binary: Path, path: Path, *variables: str, group: str = "dataset") -> CppView:
    run = subprocess.run(
        [str(binary), str(path), group, *variables], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, f"the C++ ISMRMRD library could not read {path}: {run.stderr}"
    view = CppView(header={})
    for line in run.stdout.splitlines():
        kind, *words = line.split(" ")
        if kind == "header":
            view.header = _fields(words)
        elif kind == "acquisition":
            view.acquisitions.append(_fields(words))
        elif kind == "waveform":
            view.waveforms.append(_fields(words))
        elif kind == "image":
            view.images[words[0]].append(_fields(words[2:]))
        elif kind == "pixels":
            numbers = [float(w) for w in words[2:]]
            view.pixels[words[0], int(words[1])] = [
                complex(re, im) for re, im in zip(numbers[::2], numbers[1::2], strict=True)
            ]
        elif kind == "meta":
            entry = view.meta.setdefault((words[0], int(words[1])), {})
            if "=" in words[2]:
                name, value = " ".join(words[2:]).split("=", 1)
                entry[name] = value.split("|")
    return view
