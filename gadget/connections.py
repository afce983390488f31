"""Connections that look like Gadgetron's to a handler: ``config``, ``header``, iteration, ``send``.

* :class:`MemoryConnection` feeds items from an iterable and records or forwards what is sent
  (the offline replay).
* :class:`MrdStreamConnection` speaks the MRD streaming protocol over a byte stream with ismrmrd's
  ProtocolSerializer / ProtocolDeserializer (the MRD server).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

import ismrmrd
from ismrmrd.serialization import ConfigFile, ConfigText, ProtocolDeserializer, ProtocolSerializer

from gadget.config import ConfigError, GadgetConfig

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
    """One MRD (FIRE / gadgetron_ismrmrd_client) session over a pair of binary streams.

    Reads the configuration (CONFIG_FILE by name or CONFIG_TEXT) and the ISMRMRD header on
    construction; TEXT messages are logged and skipped wherever they appear. ``config`` is
    the ``<configuration>`` element of a CONFIG_TEXT; for a CONFIG_FILE (a name, kept in
    ``config_name``) it is ``default_config`` (None: the gadget's defaults).
    Call :meth:`close` when done: it sends CLOSE.
    """

    def __init__(
        self, reader: BinaryIO, writer: BinaryIO, default_config: GadgetConfig | None = None
    ) -> None:
        self._messages = ProtocolDeserializer(reader).deserialize()
        self._serializer = ProtocolSerializer(writer)
        self._writer = writer
        self.config_name: str | None = None
        self.config: ET.Element | GadgetConfig | None = default_config
        first = self._next_message("configuration")
        if isinstance(first, ConfigFile):
            self.config_name = str(first)
            log.info("configuration by name: %r (the server's properties)", self.config_name)
        elif isinstance(first, ConfigText):
            try:
                self.config = ET.fromstring(str(first)) if str(first).strip() else None
            except ET.ParseError as error:
                raise ConfigError(f"CONFIG_TEXT is not valid XML ({error})") from None
        else:
            raise ConfigError(
                f"expected CONFIG_FILE or CONFIG_TEXT first, got {type(first).__name__}"
            )
        header = self._next_message("ISMRMRD header")
        if not isinstance(header, ismrmrd.xsd.ismrmrdHeader):
            raise ConfigError(
                f"expected the ISMRMRD header after the configuration, got {type(header).__name__}"
            )
        self.header = header

    def _next_message(self, what: str) -> object:
        try:
            for message in self._messages:
                if isinstance(message, str) and not isinstance(message, ConfigFile | ConfigText):
                    log.info("client text: %s", message)
                    continue
                return message
        except EOFError:
            pass
        raise ConnectionError(f"stream closed before the {what}")

    def __iter__(self) -> Iterator[object]:
        try:
            for message in self._messages:
                if isinstance(message, str) and not isinstance(message, ConfigFile | ConfigText):
                    log.info("client text: %s", message)
                    continue
                yield message
        except EOFError as error:
            raise ConnectionError(f"client connection dropped: {error}") from None

    def send(self, item: object) -> None:
        self._serializer.serialize(item)
        self._writer.flush()

    def close(self) -> None:
        """Send CLOSE and flush."""
        self._serializer.close()
