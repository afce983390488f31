"""Gadgetron's external-language protocol, read with bounds and deadlines.

Gadgetron (``apps/gadgetron/connection/nodes/common``) opens an external gadget's socket by sending
``CONFIG`` (id 2, uint32 length, the ``<configuration>`` document) and ``HEADER`` (id 3, uint32
length, the ISMRMRD header), then messages (uint16 id, then a body its reader knows how to frame)
and ``CLOSE`` (id 4). From the gadget it reads images / acquisitions / waveforms, ``ERROR`` (id 8,
uint64 length, text; it then closes its sending side and raises the text when CLOSE arrives) and
``CLOSE``. TEXT (id 5) from the gadget is an illegal message to Gadgetron, so it is never sent.

:class:`GadgetronConnection` speaks that protocol without gadgetron-python's ``Connection``
(whose socket wrapper loops forever when the peer closes): every read ends at EOF or at a
deadline, every length is checked against a cap before anything is allocated.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ismrmrd
from gadgetron.external import constants

from gadget import mrd_input
from gadget.config import ConfigError
from gadget.geometry import HeaderError

log = logging.getLogger(__name__)

MESSAGE_ID = constants.GadgetMessageIdentifier  # uint16, little endian
CONFIG, HEADER = constants.GADGET_MESSAGE_CONFIG, constants.GADGET_MESSAGE_HEADER
CLOSE = constants.GADGET_MESSAGE_CLOSE
TEXT, ERROR = constants.GADGET_MESSAGE_TEXT, constants.GADGET_MESSAGE_ERROR


class ProtocolError(ValueError):
    """A message that is framed wrongly, too long, or not the one the protocol expects here."""


@dataclass(frozen=True)
class Limits:
    """Caps and deadlines of one Gadgetron connection.

    Attributes:
        setup_timeout_s: time allowed for CONFIG and HEADER to arrive.
        idle_timeout_s: longest silence between messages afterwards (None: wait for ever; the
            socket still ends at EOF).
        stall_timeout_s: longest silence inside a data message, after its id: Gadgetron writes
            a message in one go, so a longer pause means a length field declares bytes that
            never come (a damaged stream), which would otherwise hold the connection until the
            idle timeout.
        max_text_bytes: largest CONFIG / HEADER / TEXT body accepted.
        max_read_bytes: largest single read of a message body (bounds what one message allocates).
    """

    setup_timeout_s: float = 30.0
    idle_timeout_s: float | None = 3600.0
    stall_timeout_s: float = 5.0
    max_text_bytes: int = 16 * 2**20
    max_read_bytes: int = 2**30


class BoundedSocket:
    """read / write / close over a socket, as gadgetron-python's readers and writers expect.

    ``read`` raises ConnectionError when the peer has gone or the socket's timeout passes, and
    ProtocolError for a read larger than ``max_read_bytes``; ``close`` sends CLOSE if it can.
    """

    def __init__(self, sock: socket.socket, max_read_bytes: int = Limits.max_read_bytes) -> None:
        self.socket = sock
        self.max_read_bytes = max_read_bytes
        self.bytes_read = 0

    def read(self, nbytes: int) -> bytes:
        if nbytes > self.max_read_bytes:
            raise ProtocolError(
                f"a message asks to read {nbytes} bytes at stream offset {self.bytes_read}; "
                f"expected at most {self.max_read_bytes}"
            )
        chunks, remaining = [], nbytes
        while remaining:
            try:
                chunk = self.socket.recv(min(remaining, 2**20))
            except TimeoutError:
                raise ConnectionError(
                    f"no data for {self.socket.gettimeout()} s with {remaining} of {nbytes} bytes "
                    f"unread (stream offset {self.bytes_read}); expected the rest of the message"
                ) from None
            if not chunk:
                raise ConnectionError(
                    f"connection closed by the peer with {remaining} of {nbytes} bytes unread "
                    f"(stream offset {self.bytes_read})"
                )
            chunks.append(chunk)
            remaining -= len(chunk)
            self.bytes_read += len(chunk)
        return b"".join(chunks)

    def write(self, data: bytes) -> None:
        self.socket.sendall(data)

    def send_error(self, text: str) -> None:
        """An ERROR message (uint64 length + UTF-8 text), as Gadgetron's Serialization reads it."""
        body = text.encode("utf-8")
        self.write(MESSAGE_ID.pack(ERROR) + struct.pack("<Q", len(body)) + body)

    def close(self, linger_s: float = 1.0) -> None:
        """Send CLOSE, then read what the peer still sends for up to ``linger_s`` before closing:
        closing with unread input makes the kernel reset the connection, and the peer could lose
        the ERROR and CLOSE just sent."""
        try:
            self.socket.sendall(MESSAGE_ID.pack(CLOSE))
            self.socket.shutdown(socket.SHUT_WR)
            self.socket.settimeout(linger_s)
            deadline = time.monotonic() + linger_s
            while time.monotonic() < deadline and self.socket.recv(2**16):
                pass
        except OSError as error:
            log.debug("CLOSE: peer already gone or silent: %s", error)
        self.socket.close()


def read_message_id(stream: BoundedSocket) -> int:
    return int(MESSAGE_ID.unpack(stream.read(MESSAGE_ID.size))[0])


def read_text(stream: BoundedSocket, what: str, length_format: str, cap: int) -> bytes:
    """A length-prefixed body; the length is checked against ``cap`` before reading."""
    size = struct.calcsize(length_format)
    (length,) = struct.unpack(length_format, stream.read(size))
    if length > cap:
        raise ProtocolError(f"{what}: length field {length} bytes; expected at most {cap}")
    return stream.read(length)


def read_setup(stream: BoundedSocket, cap: int) -> tuple[bytes, bytes]:
    """CONFIG then HEADER (ProtocolError if another id comes first)."""
    bodies = []
    for expected, what in ((CONFIG, "CONFIG"), (HEADER, "HEADER")):
        try:
            mid = read_message_id(stream)
            if mid != expected:
                raise ProtocolError(
                    f"message id {mid} where Gadgetron sends {what} (id {expected}); "
                    "expected CONFIG, HEADER, then data"
                )
            bodies.append(read_text(stream, f"{what} message", "<I", cap))
        except ConnectionError as error:
            raise ConnectionError(
                f"reading the {what} message: {error}; expected CONFIG (id 2) and HEADER (id 3), "
                "each a uint32 length and that many bytes"
            ) from None
    return bodies[0], bodies[1]


def parse_config(text: bytes) -> ET.Element | None:
    """The ``<configuration>`` Gadgetron sends; None when it is empty (pugixml writes only
    ``<?xml version="1.0"?>`` for a node without ``<configuration>``, as after re-serialization)."""
    stripped = text.rstrip(b"\0").strip()
    if not stripped or (stripped.startswith(b"<?xml") and stripped.endswith(b"?>")):
        return None
    try:
        return ET.fromstring(stripped)
    except ET.ParseError as error:
        raise ConfigError(
            f"CONFIG message ({len(text)} bytes) is not well-formed XML ({error}); expected "
            "a <configuration> element with <property name=... value=.../> children"
        ) from None


def parse_header(text: bytes) -> ismrmrd.xsd.ismrmrdHeader:
    """The ISMRMRD header of the HEADER message (HeaderError naming what is wrong)."""
    try:
        return mrd_input.parse_header(text.rstrip(b"\0"), f"HEADER message ({len(text)} bytes)")
    except mrd_input.InputError as error:
        raise HeaderError(mrd_input.with_expectation(str(error))) from None


def default_readers() -> dict[int, Callable[[BoundedSocket], object]]:
    """gadgetron-python's readers, by message id."""
    from gadgetron.external import readers
    from gadgetron.types.acquisition_bucket import read_acquisition_bucket
    from gadgetron.types.image_array import read_image_array
    from gadgetron.types.recon_data import read_recon_data

    return {
        constants.GADGET_MESSAGE_ISMRMRD_ACQUISITION: readers.read_acquisition,
        constants.GADGET_MESSAGE_ISMRMRD_WAVEFORM: readers.read_waveform,
        constants.GADGET_MESSAGE_ISMRMRD_IMAGE: readers.read_image,
        constants.GADGET_MESSAGE_IMAGE_ARRAY: read_image_array,
        constants.GADGET_MESSAGE_RECON_DATA: read_recon_data,
        constants.GADGET_MESSAGE_BUCKET: read_acquisition_bucket,
    }


def _writers() -> list[tuple[type, Callable[[BoundedSocket, Any], None]]]:
    from gadgetron.external import writers
    from gadgetron.types.image_array import ImageArray, write_image_array
    from gadgetron.types.recon_data import ReconData, write_recon_data

    return [
        (ismrmrd.Acquisition, writers.write_acquisition),
        (ismrmrd.Waveform, writers.write_waveform),
        (ismrmrd.Image, writers.write_image),
        (ImageArray, write_image_array),
        (ReconData, write_recon_data),
    ]


def messages(
    stream: BoundedSocket,
    readers: dict[int, Callable[[BoundedSocket], object]],
    max_text_bytes: int = Limits.max_text_bytes,
    stall_timeout_s: float | None = None,
) -> Iterator[object]:
    """Items until CLOSE. TEXT and ERROR are logged and skipped; an id without a reader raises
    ProtocolError (its body has no length field, so nothing after it can be framed).

    Between messages the socket keeps the timeout it has (the idle timeout); inside one, after its
    id, it waits at most ``stall_timeout_s`` for each byte (None: the same timeout)."""
    count = 0
    between = stream.socket.gettimeout()
    inside = between if stall_timeout_s is None else stall_timeout_s
    if between is not None and stall_timeout_s is not None:
        inside = min(between, stall_timeout_s)
    while True:
        try:
            mid = read_message_id(stream)
        except ConnectionError as error:
            # names the message the stream ended in (a cut inside an id leaves no other item)
            raise ConnectionError(
                f"the stream ended after {count} data messages without CLOSE, where the id of "
                f"message {count + 1} or CLOSE was expected: {error}"
            ) from None
        if mid == CLOSE:
            return
        stream.socket.settimeout(inside)
        try:
            item = _read_item(stream, mid, readers, count, max_text_bytes)
        finally:
            stream.socket.settimeout(between)
        if item is _SKIPPED:
            continue
        count += 1
        yield item


_SKIPPED = object()


def _read_item(
    stream: BoundedSocket,
    mid: int,
    readers: dict[int, Callable[[BoundedSocket], object]],
    count: int,
    max_text_bytes: int,
) -> object:
    """The body of message ``mid`` (its id read): the item, or _SKIPPED for TEXT and ERROR."""
    if mid in (TEXT, ERROR):
        fmt, name = ("<I", "TEXT") if mid == TEXT else ("<Q", "ERROR")
        text = read_text(
            stream, f"{name} message (id {mid}) after {count} data messages", fmt, max_text_bytes
        )
        log.warning("Gadgetron sent %s after %d data messages: %r", name, count, text[:500])
        return _SKIPPED
    reader = readers.get(mid)
    if reader is None:
        raise ProtocolError(
            f"message id {mid} after {count} data messages has no reader here (expected one "
            f"of {sorted(readers)}, TEXT {TEXT}, ERROR {ERROR} or CLOSE {CLOSE}); its body "
            "cannot be framed, so the stream ends here"
        )
    try:
        return reader(stream)
    except ConnectionError as error:
        raise ConnectionError(f"message id {mid} (data message {count + 1}): {error}") from None
    except (ValueError, TypeError, EOFError) as error:  # gadgetron-python's readers
        raise ProtocolError(
            f"message id {mid} (data message {count + 1}) is not well-formed: "
            f"{type(error).__name__}: {error}"
        ) from error


class GadgetronConnection:
    """One Gadgetron external-node connection: ``config``, ``header``, iteration, ``send``.

    Construction reads CONFIG and HEADER within ``limits.setup_timeout_s``; a stream that ends,
    stalls or is malformed there raises ConnectionError / ProtocolError / ConfigError /
    HeaderError (the caller answers with :meth:`fail`). Iteration yields items until CLOSE; TEXT
    and ERROR messages are logged and skipped; a message id with no reader ends the iteration
    with ProtocolError (its body cannot be framed, so nothing after it can be read).

    Args:
        sock: the connected socket (owned by the connection from now on).
        limits: caps and deadlines.
    """

    def __init__(self, sock: socket.socket, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.stream = BoundedSocket(sock, self.limits.max_read_bytes)
        sock.settimeout(self.limits.setup_timeout_s)
        config_bytes, header_bytes = read_setup(self.stream, self.limits.max_text_bytes)
        sock.settimeout(self.limits.idle_timeout_s)
        self.config_bytes, self.header_bytes = config_bytes, header_bytes
        self.config = parse_config(config_bytes)
        self.header = parse_header(header_bytes)
        self._readers = default_readers()
        self._writers = _writers()

    def __iter__(self) -> Iterator[object]:
        return messages(
            self.stream, self._readers, self.limits.max_text_bytes, self.limits.stall_timeout_s
        )

    def send(self, item: object) -> None:
        for kind, writer in self._writers:
            if isinstance(item, kind):
                writer(self.stream, item)
                return
        raise TypeError(f"no Gadgetron writer for {type(item).__name__}")

    def send_error(self, text: str) -> None:
        self.stream.send_error(text)

    def close(self) -> None:
        """Send CLOSE (if the peer is still there) and close the socket."""
        self.stream.close()


def fail(stream: BoundedSocket, error: BaseException) -> None:
    """Tell Gadgetron why: ERROR with the text, then CLOSE (quietly if the peer is gone)."""
    try:
        stream.send_error(str(error))
    except OSError as send_error:
        log.debug("could not send ERROR, peer gone: %s", send_error)
    stream.close()
