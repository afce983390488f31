"""MRD streaming protocol framing over a socket: bounded, deadline-guarded reads; plain writes.

Every message is a little-endian ``uint16`` id followed by its body:

====  ==================  ==========================================================
id    name                body
====  ==================  ==========================================================
1     CONFIG_FILE         1024 bytes, a name padded with NULs
2     CONFIG_TEXT         ``uint32`` length + text (FIRE clients end it with a NUL)
3     HEADER              ``uint32`` length + ISMRMRD XML header (ditto)
4     CLOSE               nothing
5     TEXT                ``uint32`` length + text (ditto)
1008  ACQUISITION         340-byte header, trajectory, data (sizes from the header)
1022  IMAGE               198-byte header, ``uint64`` attribute length + text, data
1026  WAVEFORM            40-byte header, data (sizes from the header)
====  ==================  ==========================================================

python-ismrmrd-server's client counts a trailing NUL in the length of CONFIG_TEXT, HEADER and
TEXT; ``gadgetron_ismrmrd_client`` does for CONFIG_TEXT and HEADER up to Gadgetron 4.0 and not
since 4.1. Both forms are read alike: the text ends at its first NUL.

Nothing here depends on ``ismrmrd.serialization`` (ismrmrd-python >= 1.15 only): headers are read
with the ctypes structures and objects built with ``from_bytes``, as in ismrmrd-python 1.14.
Every size field is checked against :class:`FrameLimits` before anything is allocated.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import time
from dataclasses import dataclass
from typing import TypeAlias

import ismrmrd

CONFIG_FILE, CONFIG_TEXT, HEADER, CLOSE, TEXT = 1, 2, 3, 4, 5
ACQUISITION, IMAGE, WAVEFORM = 1008, 1022, 1026
NAMES = {
    CONFIG_FILE: "CONFIG_FILE",
    CONFIG_TEXT: "CONFIG_TEXT",
    HEADER: "HEADER",
    CLOSE: "CLOSE",
    TEXT: "TEXT",
    ACQUISITION: "ACQUISITION",
    IMAGE: "IMAGE",
    WAVEFORM: "WAVEFORM",
}
CONFIG_FILE_BYTES = 1024
_ACQ_HEADER = ctypes.sizeof(ismrmrd.AcquisitionHeader)
_IMAGE_HEADER = ctypes.sizeof(ismrmrd.ImageHeader)
_WAVEFORM_HEADER = ctypes.sizeof(ismrmrd.WaveformHeader)
_IMAGE_ITEM_BYTES = {1: 2, 2: 2, 3: 4, 4: 4, 5: 4, 6: 8, 7: 8, 8: 16}  # ISMRMRD data_type -> bytes


class FramingError(ValueError):
    """A message that cannot be read (unknown id, a size over a limit, bad text)."""


class StreamEnded(ConnectionError):
    """The peer closed the stream between two messages."""


class StreamCut(ConnectionError):
    """The peer closed (or reset) the stream inside a message."""


class ReadTimeout(TimeoutError):
    """No byte within the idle timeout, or a message not complete within its deadline."""


@dataclass(frozen=True)
class FrameLimits:
    """What one message may declare before the reader refuses it.

    Attributes:
        max_text_bytes: CONFIG_TEXT, HEADER, TEXT and image attribute lengths.
        max_samples: ``number_of_samples`` of an acquisition or waveform.
        max_channels: ``active_channels`` of an acquisition, ``channels`` of an image or waveform.
        max_trajectory_dimensions: ``trajectory_dimensions`` of an acquisition.
        max_image_bytes: pixel data of one image.
        idle_timeout_s: longest wait for the first byte of a message.
        message_timeout_s: longest time from the first to the last byte of one message.
        stall_timeout_s: longest silence inside a message, after its first byte. Clients write a
            message in one go, so a longer pause there means a length field declares bytes the
            client never sends (a damaged stream), and waiting for them would hold both sides
            until the message timeout.
    """

    max_text_bytes: int = 16 << 20
    max_samples: int = 8192
    max_channels: int = 128
    max_trajectory_dimensions: int = 3
    max_image_bytes: int = 64 << 20
    idle_timeout_s: float = 60.0
    message_timeout_s: float = 60.0
    stall_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_text_bytes", "max_samples", "max_channels", "max_image_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if min(self.idle_timeout_s, self.message_timeout_s, self.stall_timeout_s) <= 0:
            raise ValueError(
                "idle_timeout_s, message_timeout_s and stall_timeout_s: expected > 0 seconds"
            )


@dataclass(frozen=True)
class ConfigFileMessage:
    name: str


@dataclass(frozen=True)
class ConfigTextMessage:
    text: str


@dataclass(frozen=True)
class HeaderMessage:
    text: str


@dataclass(frozen=True)
class TextMessage:
    text: str


@dataclass(frozen=True)
class CloseMessage:
    pass


Message: TypeAlias = (
    "ConfigFileMessage | ConfigTextMessage | HeaderMessage | TextMessage | CloseMessage"
    " | ismrmrd.Acquisition | ismrmrd.Image | ismrmrd.Waveform"
)


def text_of(raw: bytes, what: str) -> str:
    """Text up to its first NUL (a NUL-terminated and a bare text read alike), as UTF-8."""
    try:
        return raw.split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError as error:
        raise FramingError(f"{what}: not UTF-8 text ({error})") from None


class FrameReader:
    """Reads MRD messages from a socket, one at a time, within :class:`FrameLimits`.

    ``read_message`` returns the next message or raises StreamEnded (EOF between messages),
    StreamCut (EOF inside one), ReadTimeout or FramingError; the errors name the message (id,
    number in the stream, byte offset) and what was expected. ``peek_id`` reads the next id only.
    """

    def __init__(self, sock: socket.socket, limits: FrameLimits) -> None:
        self.sock = sock
        self.limits = limits
        self.offset = 0  # bytes read so far
        self.count = 0  # messages read so far
        self._pending_id: int | None = None
        self._deadline: float | None = None

    def peek_id(self) -> int:
        """The id of the next message, read but kept for :meth:`read_message`."""
        if self._pending_id is None:
            self._pending_id = self._read_id()
        return self._pending_id

    def read_message(self) -> Message:
        mid = self.peek_id()
        self._pending_id = None
        self._deadline = time.monotonic() + self.limits.message_timeout_s
        self.count += 1
        where = f"message {self.count} (id {mid} {NAMES.get(mid, '?')}, byte {self.offset - 2})"
        try:
            message = self._read_body(mid, where)
        finally:
            self._deadline = None
        return message

    def _read_id(self) -> int:
        self._deadline = None
        first = self._read(1, "the next message id", boundary=True)
        self._deadline = time.monotonic() + self.limits.message_timeout_s
        return int(struct.unpack("<H", first + self._read(1, "a message id"))[0])

    def _read_body(self, mid: int, where: str) -> Message:
        if mid == CLOSE:
            return CloseMessage()
        if mid == CONFIG_FILE:
            return ConfigFileMessage(text_of(self._read(CONFIG_FILE_BYTES, where), where).strip())
        if mid in (CONFIG_TEXT, HEADER, TEXT):
            length = self._uint(4, where)
            self._check(length, self.limits.max_text_bytes, f"{where}: text length")
            text = text_of(self._read(length, where), where)
            kind = {CONFIG_TEXT: ConfigTextMessage, HEADER: HeaderMessage, TEXT: TextMessage}[mid]
            return kind(text)
        if mid == ACQUISITION:
            return self._acquisition(where)
        if mid == IMAGE:
            return self._image(where)
        if mid == WAVEFORM:
            return self._waveform(where)
        raise FramingError(
            f"{where}: unknown message id {mid}; expected one of "
            + ", ".join(f"{k} {v}" for k, v in NAMES.items())
        )

    def _acquisition(self, where: str) -> ismrmrd.Acquisition:
        raw = self._read(_ACQ_HEADER, where)
        head = ismrmrd.AcquisitionHeader.from_buffer_copy(raw)
        self._check(head.number_of_samples, self.limits.max_samples, f"{where}: number_of_samples")
        self._check(head.active_channels, self.limits.max_channels, f"{where}: active_channels")
        self._check(
            head.trajectory_dimensions,
            self.limits.max_trajectory_dimensions,
            f"{where}: trajectory_dimensions",
        )
        n = head.number_of_samples
        body = self._read(4 * n * head.trajectory_dimensions + 8 * n * head.active_channels, where)
        return ismrmrd.Acquisition.from_bytes(raw + body)

    def _image(self, where: str) -> ismrmrd.Image:
        raw = self._read(_IMAGE_HEADER, where)
        head = ismrmrd.ImageHeader.from_buffer_copy(raw)
        item = _IMAGE_ITEM_BYTES.get(head.data_type)
        if item is None:
            raise FramingError(
                f"{where}: image data_type {head.data_type}; expected 1..8 (USHORT..CXDOUBLE)"
            )
        self._check(head.channels, self.limits.max_channels, f"{where}: image channels")
        attribute_length = self._uint(8, where)
        self._check(attribute_length, self.limits.max_text_bytes, f"{where}: attribute length")
        attributes = self._read(attribute_length, where)
        x, y, z = head.matrix_size
        nbytes = item * head.channels * x * y * z
        self._check(nbytes, self.limits.max_image_bytes, f"{where}: image data bytes")
        data = self._read(nbytes, where)
        text_of(attributes, f"{where}: attributes")
        return ismrmrd.Image.from_bytes(
            raw + struct.pack("<Q", attribute_length) + attributes + data
        )

    def _waveform(self, where: str) -> ismrmrd.Waveform:
        raw = self._read(_WAVEFORM_HEADER, where)
        head = ismrmrd.WaveformHeader.from_buffer_copy(raw)
        self._check(head.number_of_samples, self.limits.max_samples, f"{where}: number_of_samples")
        self._check(head.channels, self.limits.max_channels, f"{where}: channels")
        body = self._read(4 * head.channels * head.number_of_samples, where)
        return ismrmrd.Waveform.from_bytes(raw + body)

    @staticmethod
    def _check(value: int, limit: int, what: str) -> None:
        if value > limit:
            raise FramingError(f"{what} is {value}; this server accepts at most {limit}")

    def _uint(self, size: int, where: str) -> int:
        return int(struct.unpack("<I" if size == 4 else "<Q", self._read(size, where))[0])

    def _read(self, nbytes: int, what: str, boundary: bool = False) -> bytes:
        """Exactly ``nbytes``; EOF before the first byte of a message id is StreamEnded.

        Reads in chunks of at most 1 MiB, so memory follows the bytes that really arrive, not
        the size a message declares."""
        chunks: list[bytes] = []
        got = 0
        while got < nbytes:
            now = time.monotonic()
            wait, stalling = self.limits.idle_timeout_s, False
            if self._deadline is not None:  # inside a message
                wait = min(wait, self._deadline - now)
                if self.limits.stall_timeout_s < wait:
                    wait, stalling = self.limits.stall_timeout_s, True
            if wait <= 0:
                raise ReadTimeout(
                    f"{what}: not complete within {self.limits.message_timeout_s:g} s "
                    f"({got} of {nbytes} bytes)"
                )
            self.sock.settimeout(wait)
            try:
                chunk = self.sock.recv(min(nbytes - got, 1 << 20))
            except TimeoutError:
                if self._deadline is None:
                    raise ReadTimeout(
                        f"no message for {self.limits.idle_timeout_s:g} s (idle timeout)"
                    ) from None
                if stalling:
                    raise ReadTimeout(
                        f"{what}: no byte for {self.limits.stall_timeout_s:g} s with {got} of "
                        f"{nbytes} bytes read; expected the rest of the message (a length field "
                        "that declares more bytes than the client sent?)"
                    ) from None
                continue  # the loop reports the message deadline
            except (ConnectionResetError, BrokenPipeError) as error:
                raise StreamCut(f"{what}: connection reset by the client ({error})") from None
            if not chunk:
                if boundary and got == 0:
                    raise StreamEnded(f"the client closed the stream after {self.count} messages")
                raise StreamCut(
                    f"{what}: the client closed the stream with {nbytes - got} of {nbytes} "
                    "bytes missing"
                )
            chunks.append(chunk)
            got += len(chunk)
            self.offset += len(chunk)
        return b"".join(chunks)


def text_frame(mid: int, text: str) -> bytes:
    """A CONFIG_TEXT / HEADER / TEXT message, NUL-terminated as python-ismrmrd-server sends it."""
    body = text.encode("utf-8") + b"\0"
    return struct.pack("<HI", mid, len(body)) + body


def config_file_frame(name: str) -> bytes:
    """A CONFIG_FILE message: the name in 1024 NUL-padded bytes."""
    raw = name.encode("utf-8")
    if len(raw) >= CONFIG_FILE_BYTES:
        raise ValueError(f"configuration name of {len(raw)} bytes; at most 1023 fit")
    return struct.pack("<H", CONFIG_FILE) + raw.ljust(CONFIG_FILE_BYTES, b"\0")


def close_frame() -> bytes:
    return struct.pack("<H", CLOSE)


def object_frame(item: ismrmrd.Acquisition | ismrmrd.Image | ismrmrd.Waveform) -> bytes:
    """An ACQUISITION, IMAGE or WAVEFORM message (ismrmrd-python 1.14's ``to_bytes``)."""
    mid = {ismrmrd.Acquisition: ACQUISITION, ismrmrd.Image: IMAGE, ismrmrd.Waveform: WAVEFORM}[
        type(item)
    ]
    return struct.pack("<H", mid) + item.to_bytes()
