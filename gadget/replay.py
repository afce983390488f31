"""Offline replay: an ISMRMRD HDF5 dataset through the gadget's own handler, images into HDF5.

The output follows the ISMRMRD layout that Gadgetron's clients write: ``/<group>/xml`` (the
input's header) and ``/<group>/image_<series>/{header, attributes, data}``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import ismrmrd

from gadget.config import GadgetConfig
from gadget.connections import MemoryConnection
from gadget.datasets import open_read_only
from gadget.handlers import handle_acquisitions
from gadget.pipeline import RunSummary
from gadget.recon import Reconstructor

if TYPE_CHECKING:
    from diffusion_core.reconstruct import ReconProgress

log = logging.getLogger(__name__)


class ReplayError(RuntimeError):
    """The input cannot be read as an ISMRMRD dataset, or the output would be overwritten."""


@dataclass(frozen=True)
class ReplayResult:
    """Summary of a replay: the handler's run and where the images went."""

    run: RunSummary
    output: Path
    group: str
    acquisitions: int
    passed_through: int
    previews: tuple[Path, ...]


def open_input(path: Path, group: str) -> tuple[bytes, ismrmrd.xsd.ismrmrdHeader, int]:
    """The input's header text, parsed header and number of acquisitions (clear errors otherwise)."""
    if not path.is_file():
        raise ReplayError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise ReplayError(f"{path}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            if group not in f:
                raise ReplayError(f"{path}: no group /{group} (groups: {sorted(f.keys())})")
            missing = [name for name in ("xml", "data") if name not in f[group]]
            if missing:
                raise ReplayError(f"{path}: /{group} is not an ISMRMRD dataset (missing {missing})")
        with open_read_only(path, group) as dataset:
            xml = dataset.read_xml_header()
            count = dataset.number_of_acquisitions()
    except (OSError, KeyError) as error:
        raise ReplayError(f"{path}: cannot be read as ISMRMRD HDF5 ({error})") from None
    try:
        header = ismrmrd.xsd.CreateFromDocument(xml)
    except Exception as error:
        raise ReplayError(f"{path}: /{group}/xml is not a valid ISMRMRD header ({error})") from None
    return xml, header, count


def _acquisitions(
    dataset: ismrmrd.Dataset, count: int, progress: bool
) -> Iterator[ismrmrd.Acquisition]:
    from tqdm import tqdm

    for index in tqdm(range(count), desc="acquisitions", unit="acq", disable=not progress):
        try:
            yield dataset.read_acquisition(index)
        except (OSError, ValueError) as error:
            raise ReplayError(f"acquisition {index} cannot be read ({error})") from None


class _SamplingBar:
    """A tqdm bar over the sampler steps of the slice being reconstructed (position 1)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, report: ReconProgress) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        total = report.num_samples * report.total_steps
        done = report.first_sample * report.total_steps + report.batch * report.step
        if self.bar is None or done < self.bar.n:
            self.close()
            self.bar = tqdm(total=total, desc="sampling", unit="step", position=1, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def replay(
    source: Path,
    output: Path,
    config: GadgetConfig,
    *,
    in_group: str = "dataset",
    out_group: str = "dataset",
    overwrite: bool = False,
    png_dir: Path | None = None,
    progress: bool = True,
    reconstructor: Reconstructor | None = None,
) -> ReplayResult:
    """Replay ``source`` through :func:`gadget.handlers.handle_acquisitions` into ``output``.

    Raises ReplayError before reconstructing anything if the input is not ISMRMRD HDF5 or if
    ``output`` already holds ``out_group`` and ``overwrite`` is false.
    """
    xml, header, count = open_input(source, in_group)
    if output.resolve() == source.resolve():
        raise ReplayError(f"{output}: the output must be another file than the input")
    with h5py.File(output, "a") as out:
        if out_group in out:
            if not overwrite:
                raise ReplayError(
                    f"{output}: group /{out_group} exists; pass --overwrite to replace it"
                )
            del out[out_group]
        out.create_group(out_group).create_dataset(
            "xml", data=[xml], dtype=h5py.special_dtype(vlen=bytes)
        )
    writer = ismrmrd.Dataset(str(output), out_group, create_if_needed=True)
    previews: list[Path] = []
    passed = 0

    def send(item: object) -> None:
        nonlocal passed
        if not isinstance(item, ismrmrd.Image):
            passed += 1
            return
        writer.append_image(f"image_{item.image_series_index}", item)
        if png_dir is not None:
            from gadget.previews import write_preview

            previews.append(write_preview(item, png_dir))

    try:
        with open_read_only(source, in_group) as reader:
            connection = MemoryConnection(
                config.to_xml(), header, _acquisitions(reader, count, progress), send
            )
            run = handle_acquisitions(connection, reconstructor)
    finally:
        writer.close()
    if passed:
        log.info("%d items passed through unchanged were not written (not images)", passed)
    return ReplayResult(run, output, out_group, count, passed, tuple(previews))
