"""Two MRD clients that put bytes on the wire exactly as the real ones do (written from their
source, not copied):

* :func:`fire_session` -- python-ismrmrd-server's ``client.py`` / ``connection.py``: CONFIG_FILE
  as ``struct.pack('1024s', name)``; CONFIG_TEXT, HEADER and the JSON TEXT as
  ``uint32 len(text + NUL)`` + text + NUL; then waveforms, acquisitions (id + ``serialize_into``),
  CLOSE. Its receiving side reads CONFIG_*, HEADER, CLOSE, TEXT, ACQUISITION, IMAGE, WAVEFORM and
  stops at any other id.
* :func:`gadgetron_session` -- ``gadgetron_ismrmrd_client`` (Gadgetron apps/clients): CONFIG_FILE
  as a zeroed 1024-byte struct with the name copied in; CONFIG_SCRIPT (2) and PARAMETER_SCRIPT
  (3) as ``uint32 size()`` + the string (``size()+1`` with its NUL up to Gadgetron 4.0); then
  acquisitions and waveforms, CLOSE. Its reader thread has readers for IMAGE (1022),
  DICOM_WITHNAME (1018), DEPENDENCY_QUERY (1019), TEXT (5), RESPONSE (7) and throws
  "Unknown Message ID" at anything else.

Both send from a thread while the caller reads, as the real clients do (separate process / thread).
"""

from __future__ import annotations

import ctypes
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import ismrmrd


@dataclass
class Received:
    images: list[ismrmrd.Image] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    acquisitions: list[ismrmrd.Acquisition] = field(default_factory=list)
    waveforms: list[ismrmrd.Waveform] = field(default_factory=list)
    closed: bool = False  # the server's CLOSE arrived
    error: str | None = None  # what made the client stop otherwise


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"EOF with {n - len(data)} of {n} bytes missing")
        data += chunk
    return data


def _send_items(sock: socket.socket, items: Iterable[object], ids: dict[type, int]) -> None:
    for item in items:
        sock.sendall(struct.pack("<H", ids[type(item)]))
        item.serialize_into(sock.sendall)  # type: ignore[attr-defined]


def fire_bytes_config_file(name: str) -> bytes:
    return struct.pack("<H", 1) + struct.pack("1024s", name.encode())


def fire_bytes_text(mid: int, text: str) -> bytes:
    with_nul = f"{text}\0".encode()
    return struct.pack("<H", mid) + struct.pack("<I", len(with_nul)) + with_nul


def fire_session(
    port: int,
    header_xml: str,
    items: Iterable[object] = (),
    *,
    config_file: str | None = None,
    config_text: str | None = None,
    json_config: str | None = None,
    timeout: float = 60.0,
) -> Received:
    """One session as python-ismrmrd-server's client.py runs it."""
    setup = (
        fire_bytes_config_file(config_file)
        if config_text is None
        else fire_bytes_text(2, config_text)
    ) + fire_bytes_text(3, header_xml)
    if json_config is not None:
        setup += fire_bytes_text(5, json_config)
    ids = {ismrmrd.Acquisition: 1008, ismrmrd.Waveform: 1026, ismrmrd.Image: 1022}
    return _session(port, setup, items, ids, _read_fire, timeout)


def gadgetron_session(
    port: int,
    header_xml: str,
    items: Iterable[object] = (),
    *,
    config_file: str | None = None,
    config_script: str | None = None,
    with_nul: bool = False,
    timeout: float = 60.0,
) -> Received:
    """One session as gadgetron_ismrmrd_client runs it (``with_nul``: the <= 4.0 framing)."""

    def script(mid: int, text: str) -> bytes:
        raw = text.encode() + (b"\0" if with_nul else b"")
        return struct.pack("<HI", mid, len(raw)) + raw

    if config_script is None:
        assert config_file is not None
        name = ctypes.create_string_buffer(1024)
        name.value = config_file.encode()
        setup = struct.pack("<H", 1) + bytes(name)
    else:
        setup = script(2, config_script)
    setup += script(3, header_xml)
    ids = {ismrmrd.Acquisition: 1008, ismrmrd.Waveform: 1026}
    return _session(port, setup, items, ids, _read_gadgetron, timeout)


def _session(port, setup, items, ids, read, timeout) -> Received:
    received = Received()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:

        def send() -> None:
            try:
                sock.sendall(setup)
                _send_items(sock, items, ids)
                sock.sendall(struct.pack("<H", 4))
            except OSError:
                pass  # the clients log and stop sending; the reader still reads

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            read(sock, received)
        except (EOFError, OSError) as error:
            received.error = f"{type(error).__name__}: {error}"
        sender.join(timeout=timeout)
    return received


def _text(sock: socket.socket) -> str:
    (length,) = struct.unpack("<I", _recv_exactly(sock, 4))
    return _recv_exactly(sock, length).decode("utf-8").split("\0", 1)[0]


def _image(sock: socket.socket) -> ismrmrd.Image:
    head = _recv_exactly(sock, ctypes.sizeof(ismrmrd.ImageHeader))
    raw_length = _recv_exactly(sock, 8)
    attributes = _recv_exactly(sock, struct.unpack("<Q", raw_length)[0])
    header = ismrmrd.ImageHeader.from_buffer_copy(head)
    x, y, z = header.matrix_size
    item = {1: 2, 2: 2, 3: 4, 4: 4, 5: 4, 6: 8, 7: 8, 8: 16}[header.data_type]
    data = _recv_exactly(sock, item * header.channels * x * y * z)
    return ismrmrd.Image.from_bytes(head + raw_length + attributes + data)


def _read_fire(sock: socket.socket, received: Received) -> None:
    while True:
        (mid,) = struct.unpack("<H", _recv_exactly(sock, 2))
        if mid == 4:
            received.closed = True
            return
        if mid in (2, 3, 5):
            text = _text(sock)
            if mid == 5:
                received.texts.append(text)
        elif mid == 1:
            _recv_exactly(sock, 1024)
        elif mid == 1022:
            received.images.append(_image(sock))
        elif mid == 1008:
            head = _recv_exactly(sock, ctypes.sizeof(ismrmrd.AcquisitionHeader))
            h = ismrmrd.AcquisitionHeader.from_buffer_copy(head)
            n = h.number_of_samples
            body = _recv_exactly(sock, 4 * n * h.trajectory_dimensions + 8 * n * h.active_channels)
            received.acquisitions.append(ismrmrd.Acquisition.from_bytes(head + body))
        elif mid == 1026:
            head = _recv_exactly(sock, ctypes.sizeof(ismrmrd.WaveformHeader))
            h = ismrmrd.WaveformHeader.from_buffer_copy(head)
            body = _recv_exactly(sock, 4 * h.channels * h.number_of_samples)
            received.waveforms.append(ismrmrd.Waveform.from_bytes(head + body))
        else:
            received.error = f"Received unknown message type: {mid}"
            return


def _read_gadgetron(sock: socket.socket, received: Received) -> None:
    while True:
        (mid,) = struct.unpack("<H", _recv_exactly(sock, 2))
        if mid == 4:
            received.closed = True
            return
        if mid == 1022:
            received.images.append(_image(sock))
        elif mid == 5:
            (length,) = struct.unpack("<I", _recv_exactly(sock, 4))
            received.texts.append(_recv_exactly(sock, length).split(b"\0", 1)[0].decode())
        else:
            received.error = f"Unknown Message ID {mid}"
            return
