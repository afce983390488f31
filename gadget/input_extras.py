"""What the replay keeps of its input besides the acquisitions: waveforms, images, other datasets.

Waveforms and images are read with ismrmrd-python and written again with
:class:`gadget.mrd_output.MrdWriter` (so that the C++ library reads them, whatever wrote the
input); other datasets and groups (NDArrays such as coil images) are copied as HDF5 objects,
types unchanged. An image variable whose name the replay already uses gets an ``input_`` prefix.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py

from gadget.datasets import open_read_only
from gadget.mrd_output import MrdWriter

log = logging.getLogger(__name__)

_HANDLED = {"xml", "data"}


def copy_input_extras(node: h5py.Group, writer: MrdWriter) -> tuple[list[str], list[str]]:
    """Copy the extras of the input group ``node`` into ``writer``'s group; return one line per
    kind kept and per kind left out (with the reason)."""
    kept: list[str] = []
    left_out: list[str] = []
    for name in node:
        if name in _HANDLED:
            continue
        try:
            item = node[name]
        except (KeyError, OSError) as error:
            left_out.append(f"input /{name}: cannot be read ({error})")
            continue
        try:
            if name == "waveforms" and isinstance(item, h5py.Dataset):
                kept.append(f"{_copy_waveforms(item, writer)} input waveforms -> /waveforms")
            elif isinstance(item, h5py.Group) and {"header", "attributes", "data"} <= set(item):
                target = _free_name(writer.group, name)
                count = _copy_images(node, name, target, writer)
                kept.append(f"{count} input images /{name} -> /{target}")
            else:
                target = _free_name(writer.group, name)
                node.file.copy(item, writer.group, name=target)
                kept.append(f"input /{name} copied unchanged -> /{target}")
        except (OSError, ValueError, TypeError, KeyError, LookupError) as error:
            left_out.append(f"input /{name}: not copied, it cannot be read as ISMRMRD ({error})")
    for line in left_out:
        log.warning("left out: %s", line)
    return kept, left_out


def _free_name(group: h5py.Group, name: str) -> str:
    target = name
    while target in group:
        target = f"input_{target}"
    return target


def _copy_waveforms(dataset: h5py.Dataset, writer: MrdWriter) -> int:
    with open_read_only(Path(dataset.file.filename), dataset.parent.name) as source:
        for index in range(dataset.shape[0]):
            writer.append_waveform(source.read_waveform(index))
    return int(dataset.shape[0])


def _copy_images(node: h5py.Group, name: str, target: str, writer: MrdWriter) -> int:
    with open_read_only(Path(node.file.filename), node.name) as source:
        count = source.number_of_images(name)
        for index in range(count):
            writer.append_image(target, source.read_image(name, index))
    return int(count)
