"""Write ISMRMRD HDF5 the way the C++ library (libismrmrd) does, so that every reader reads it.

libismrmrd (``libsrc/dataset.c``) stores, under ``/<group>``:

* ``xml``: one variable-length ASCII string;
* ``data``: acquisitions, a 1-D extendable compound {head, traj: vlen float, data: vlen float};
* ``waveforms``: a 1-D extendable compound {head, data: vlen uint32};
* ``<image variable>/{header, attributes, data}``: 1-D extendable datasets of the image header
  compound and of variable-length **ASCII** attribute strings, and an extendable
  (N, channels, z, y, x) array of the pixel type (complex as a {real, imag} compound).

ismrmrd-python's ``Dataset.append_image`` writes the attribute strings as variable-length UTF-8,
which HDF5 cannot convert to the ASCII strings libismrmrd reads; this writer uses ASCII (other
characters as XML character references, which the meta XML reads back as the same text). The
compound types are ismrmrd-python's, which have libismrmrd's member names and types.
"""

from __future__ import annotations

import h5py
import ismrmrd
import numpy as np
from ismrmrd.hdf5 import (
    acquisition_dtype,
    acquisition_header_dtype,
    get_hdf5type,
    image_header_dtype,
    waveform_dtype,
    waveform_header_dtype,
)

ASCII = h5py.string_dtype("ascii")


def ascii_text(text: str | bytes) -> bytes:
    """``text`` as ASCII bytes; other characters become XML character references."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text.encode("ascii", errors="xmlcharrefreplace")


class MrdWriter:
    """Append ISMRMRD items to an open HDF5 group, laid out as libismrmrd lays them out.

    Args:
        group: the ``/<group>`` of an HDF5 file opened for writing.
    """

    def __init__(self, group: h5py.Group) -> None:
        self.group = group

    def write_xml(self, xml: str | bytes) -> None:
        """The ISMRMRD header as one variable-length ASCII string (``/<group>/xml``)."""
        if "xml" in self.group:
            del self.group["xml"]
        self.group.create_dataset(
            "xml", data=np.array([ascii_text(xml)], dtype=object), dtype=ASCII
        )

    def append_image(self, variable: str, image: ismrmrd.Image) -> None:
        """Append ``image`` (header, ASCII attribute string, pixels) to ``/<group>/<variable>``."""
        attributes = ascii_text(image.attribute_string)
        head = np.frombuffer(image.getHead(), dtype=image_header_dtype).copy()
        head["attribute_string_len"] = len(attributes)
        pixels = np.ascontiguousarray(image.data).view(get_hdf5type(image.data_type))
        images = self.group.require_group(variable)
        _append(images, "header", head, image_header_dtype)
        _append(images, "attributes", np.array([attributes], dtype=object), ASCII)
        _append(images, "data", pixels[None], pixels.dtype)

    def append_acquisition(self, acquisition: ismrmrd.Acquisition) -> None:
        """Append ``acquisition`` to ``/<group>/data``."""
        row = np.empty(1, dtype=acquisition_dtype)
        row[0]["head"] = np.frombuffer(acquisition.getHead(), dtype=acquisition_header_dtype)[0]
        row[0]["data"] = (
            np.ascontiguousarray(acquisition.data, dtype=np.complex64).view(np.float32).ravel()
        )
        row[0]["traj"] = np.ascontiguousarray(acquisition.traj, dtype=np.float32).ravel()
        _append(self.group, "data", row, acquisition_dtype)

    def append_waveform(self, waveform: ismrmrd.Waveform) -> None:
        """Append ``waveform`` to ``/<group>/waveforms``."""
        row = np.zeros(1, dtype=waveform_dtype)
        row[0]["head"] = np.frombuffer(waveform.getHead(), dtype=waveform_header_dtype)[0]
        row[0]["data"] = np.ascontiguousarray(waveform.data, dtype=np.uint32).ravel()
        _append(self.group, "waveforms", row, waveform_dtype)


def _append(group: h5py.Group, name: str, rows: np.ndarray, dtype: np.dtype) -> None:
    """Append ``rows`` (first axis) to the extendable dataset ``group/name``, chunked one item
    at a time like libismrmrd; created on first use."""
    if name not in group:
        group.create_dataset(
            name,
            shape=(0, *rows.shape[1:]),
            maxshape=(None, *rows.shape[1:]),
            chunks=(1, *rows.shape[1:]),
            dtype=dtype,
        )
    dataset = group[name]
    if dataset.shape[1:] != rows.shape[1:]:
        raise ValueError(
            f"{dataset.name}: items of shape {dataset.shape[1:]}, cannot append {rows.shape[1:]}"
        )
    start = dataset.shape[0]
    dataset.resize(start + rows.shape[0], axis=0)
    dataset[start:] = rows
