"""Open ISMRMRD HDF5 datasets the same way under ismrmrd 1.14 (Gadgetron's env) and 1.15+."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ismrmrd


@contextmanager
def open_read_only(path: Path, group: str) -> Iterator[ismrmrd.Dataset]:
    """An existing dataset, closed on exit; read-only where ismrmrd can (``mode``, from 1.15).

    ismrmrd 1.14.0, the version in Gadgetron's conda env, has neither ``mode`` (it opens the file
    read/write) nor a context manager on ``Dataset``.
    """
    if "mode" in inspect.signature(ismrmrd.Dataset.__init__).parameters:
        dataset = ismrmrd.Dataset(str(path), group, create_if_needed=False, mode="r")
    else:
        dataset = ismrmrd.Dataset(str(path), group, create_if_needed=False)
    try:
        yield dataset
    finally:
        dataset.close()
