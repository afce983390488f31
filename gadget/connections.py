"""Connections that look like Gadgetron's to a handler: ``config``, ``header``, iteration, ``send``.

* :class:`MemoryConnection` feeds items from an iterable and records or forwards what is sent
  (the offline replay).
* :class:`MrdStreamConnection` speaks the MRD streaming protocol over a socket with the bounded
  framing of :mod:`gadget.mrd_framing` (the MRD server).
"""

from __future__ import annotations

import logging
import socket
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import ismrmrd

from gadget import mrd_input
from gadget.config import GadgetConfig
from gadget.mrd_config import SessionError, parse_json_config
from gadget.mrd_framing import (
    TEXT,
    CloseMessage,
    ConfigFileMessage,
    ConfigTextMessage,
    FrameLimits,
    FrameReader,
    FramingError,
    HeaderMessage,
    ReadTimeout,
    StreamCut,
    StreamEnded,
    TextMessage,
    close_frame,
    object_frame,
    text_frame,
)

log = logging.getLogger(__name__)


class MemoryConnection:
    """An in-memory connection.

    Args:
        config: the ``<configuration>`` element the handler parses (as Gadgetron would send it).
        header: the ISMRMRD header (``ismrmrd.xsd.ismrmrdHeader``).
        items: what the handler reads, in order.
        send: called with each item the handler sends.
    """

    def __init__(
        self,
        config: ET.Element | None,
        header: ismrmrd.xsd.ismrmrdHeader,
        items: Iterable[object],
        send: Callable[[object], None],
    ) -> None:
        self.config = config
        self.header = header
        self._items = items
        self._send = send

    def __iter__(self) -> Iterator[object]:
        return iter(self._items)

    def send(self, item: object) -> None:
        self._send(item)


class MrdStreamConnection:
    """One MRD session (python-ismrmrd-server / FIRE client, ``gadgetron_ismrmrd_client``).

    Construction reads the configuration (CONFIG_FILE or CONFIG_TEXT), the ISMRMRD header and,
    when the next message is a TEXT holding a FIRE JSON configuration, that too
    (``json_parameters``); TEXT messages before them are logged. Raises SessionError or
    FramingError for a stream that does not start like an MRD session, StreamEnded / StreamCut
    when the client leaves first, ReadTimeout when it goes quiet.

    ``config`` starts as None; the server sets it to the session's GadgetConfig. Iteration yields
    acquisitions, images and waveforms until the client's CLOSE, and also *ends* (without
    raising, so that the lines already read are still reconstructed) at EOF, a timeout or a
    message that cannot be read; ``ended`` then says why. ``send`` writes images; acquisitions
    and waveforms only when ``return_unprocessed`` (gadgetron_ismrmrd_client cannot read them),
    otherwise they are counted in ``held_back``.
    """

    def __init__(
        self, sock: socket.socket, limits: FrameLimits, return_unprocessed: bool = False
    ) -> None:
        self._sock = sock
        self._limits = limits
        self.reader = FrameReader(sock, limits)
        self.return_unprocessed = return_unprocessed
        self.held_back: Counter[str] = Counter()
        self.ended: str | None = None
        self.client_closed = False
        self.config: GadgetConfig | ET.Element | None = None
        configuration = self._setup_message((ConfigFileMessage, ConfigTextMessage))
        assert isinstance(configuration, ConfigFileMessage | ConfigTextMessage)
        self.configuration = configuration
        header = self._setup_message((HeaderMessage,))
        assert isinstance(header, HeaderMessage)
        self.header_text = header.text
        self.header = _parse_header(header.text, self.reader.count)
        self.json_parameters: dict[str, object] | None = None
        if self.reader.peek_id() == TEXT:
            text = self.reader.read_message()
            assert isinstance(text, TextMessage)
            self.json_parameters = parse_json_config(text.text)
            if self.json_parameters is None:
                log.info("client text: %s", text.text)
            else:
                log.info("FIRE JSON configuration: %s", self.json_parameters)

    def _setup_message(self, kinds: tuple[type, ...]) -> object:
        expected = " or ".join(k.__name__.removesuffix("Message") for k in kinds)
        while True:
            message = self.reader.read_message()
            if isinstance(message, TextMessage):
                log.info("client text: %s", message.text)
                continue
            if isinstance(message, CloseMessage):
                raise StreamEnded(f"the client sent CLOSE before its {expected}")
            if not isinstance(message, kinds):
                raise SessionError(
                    f"message {self.reader.count} is {type(message).__name__}; expected "
                    f"{expected} (a session starts with CONFIG_FILE or CONFIG_TEXT, then HEADER)"
                )
            return message

    def __iter__(self) -> Iterator[object]:
        while True:
            try:
                message = self.reader.read_message()
            except StreamEnded as error:
                self.ended = f"{error}, without CLOSE"
                return
            except (StreamCut, ReadTimeout, FramingError) as error:
                self.ended = str(error)
                return
            if isinstance(message, CloseMessage):
                self.client_closed = True
                return
            if isinstance(message, TextMessage):
                log.info("client text: %s", message.text)
                continue
            if isinstance(message, ConfigFileMessage | ConfigTextMessage | HeaderMessage):
                log.warning(
                    "message %d: a %s mid-stream, ignored",
                    self.reader.count,
                    type(message).__name__,
                )
                continue
            yield message

    def send(self, item: object) -> None:
        if isinstance(item, ismrmrd.Image) or (
            self.return_unprocessed and isinstance(item, ismrmrd.Acquisition | ismrmrd.Waveform)
        ):
            self._write(object_frame(item))
        else:
            self.held_back[type(item).__name__] += 1

    def send_text(self, line: str) -> None:
        """A TEXT message: ``line`` and a newline (gadgetron_ismrmrd_client prints TEXT as it
        comes), NUL-terminated as python-ismrmrd-server sends its log lines."""
        self._write(text_frame(TEXT, line + "\n"))

    def close(self) -> None:
        """Send CLOSE."""
        self._write(close_frame())

    def _write(self, data: bytes) -> None:
        self._sock.settimeout(self._limits.idle_timeout_s)
        self._sock.sendall(data)


def _parse_header(text: str, number: int) -> ismrmrd.xsd.ismrmrdHeader:
    try:
        return mrd_input.parse_header(text.encode(), f"ISMRMRD header (message {number})")
    except mrd_input.InputError as error:
        raise SessionError(mrd_input.with_expectation(str(error))) from None
