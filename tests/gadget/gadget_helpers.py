"""Helpers for the gadget tests: ISMRMRD files from ismrmrd-tools, Gadgetron's side of the
external-language socket (played with the gadgetron package's own readers and writers)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

import ismrmrd
from gadgetron.external import constants, readers, writers

from gadget.gadgetron_protocol import BoundedSocket as EofSafeSocket

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "gadget" / "examples" / "brain_t1_8ch_r4.h5"
MATRIX = 32


def shepp_logan(
    path: Path,
    *,
    acceleration: int,
    noise: float,
    calibration_width: int = 12,
    coils: int = 4,
    coordinates: bool = False,
) -> Path:
    """An ISMRMRD file from Debian's ismrmrd-tools (readout oversampling 2, noise scan);
    ``coordinates``: each line also stores its k-space coordinates (the tool's ``-k``)."""
    subprocess.run(
        [
            "ismrmrd_generate_cartesian_shepp_logan",
            "-m", str(MATRIX), "-c", str(coils), "-a", str(acceleration), "-w", str(calibration_width),
            "-n", str(noise), "-C", "-o", str(path), *(["-k"] if coordinates else []),
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return path


def with_calibration_mode(path: Path, mode: str, out: Path) -> Path:
    """A copy of the ISMRMRD file ``path`` whose header says calibrationMode ``mode``."""
    import shutil

    import h5py

    shutil.copy(path, out)
    with h5py.File(out, "r+") as f:
        xml = f["dataset/xml"][0]
        text = xml.decode() if isinstance(xml, bytes) else xml
        old = text.split("<calibrationMode>")[1].split("</calibrationMode>")[0]
        text = text.replace(f"<calibrationMode>{old}<", f"<calibrationMode>{mode}<")
        f["dataset/xml"][0] = text.encode() if isinstance(xml, bytes) else text
    return out


def acquisitions_of(path: Path) -> tuple[bytes, list[ismrmrd.Acquisition]]:
    from gadget.datasets import open_read_only  # ismrmrd 1.14 (Gadgetron's env) has no mode="r"

    with open_read_only(path, "dataset") as dataset:
        xml = dataset.read_xml_header()
        return xml, [dataset.read_acquisition(i) for i in range(dataset.number_of_acquisitions())]


def assembled_slices(path: Path) -> list:
    """The slices of ISMRMRD file ``path`` as the gadget assembles them (noise, grouping,
    placement; no reconstruction)."""
    from gadget.assembly import assemble, group_slices
    from gadget.geometry import EncodingGeometry
    from gadget.stream import cartesian_acquisitions, noise_adjustment

    xml, acquisitions = acquisitions_of(path)
    geometry = EncodingGeometry.from_header(ismrmrd.xsd.CreateFromDocument(xml))
    groups = group_slices(noise_adjustment(cartesian_acquisitions(acquisitions, list().append)))
    return [assemble(g, geometry) for g in groups]


def configuration_xml(properties: dict[str, str]) -> bytes:
    body = "".join(f'<property name="{k}" value="{v}"/>' for k, v in properties.items())
    return f"<configuration>{body}</configuration>".encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SocketStream = EofSafeSocket  # read/write over a socket; raises ConnectionError at EOF


def play_gadgetron(
    sock: socket.socket, config: bytes, header: bytes, items: Iterable[object], close: bool = True
) -> list[object]:
    """Gadgetron's side of the external interface: send config, header, items and CLOSE (from a
    thread); return what the gadget sends back until its CLOSE (an ERROR as its text)."""
    stream = SocketStream(sock)

    def send_all() -> None:
        stream.write(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_CONFIG))
        writers.write_byte_string(stream, config)
        stream.write(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_HEADER))
        writers.write_byte_string(stream, header)
        for item in items:
            if isinstance(item, ismrmrd.Acquisition):
                writers.write_acquisition(stream, item)
            elif isinstance(item, ismrmrd.Waveform):
                writers.write_waveform(stream, item)
            else:
                from gadgetron.types.recon_data import write_recon_data

                write_recon_data(stream, item)
        if close:
            stream.write(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_CLOSE))

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    received: list[object] = []
    while True:
        mid = readers.read(stream, constants.GadgetMessageIdentifier)
        if mid == constants.GADGET_MESSAGE_CLOSE:
            break
        if mid == constants.GADGET_MESSAGE_ISMRMRD_IMAGE:
            received.append(readers.read_image(stream))
        elif mid == constants.GADGET_MESSAGE_ISMRMRD_ACQUISITION:
            received.append(readers.read_acquisition(stream))
        elif mid == constants.GADGET_MESSAGE_ISMRMRD_WAVEFORM:
            received.append(readers.read_waveform(stream))
        elif mid == constants.GADGET_MESSAGE_ERROR:  # uint64 length + text, as Gadgetron reads it
            received.append(readers.read_byte_string(stream, constants.uint64).decode())
        else:
            raise AssertionError(f"unexpected message id {mid} from the gadget")
    sender.join(timeout=30)
    return received


def gadget_command(*args: str) -> list[str]:
    return [sys.executable, *args]
