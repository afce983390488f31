"""Entry points for Gadgetron's external-language interface.

Gadgetron starts them with ``python -m gadgetron <port> gadget.handlers <target>`` (an
``<execute name="gadget.handlers" target="..." type="python"/>`` node) or connects to one started
with ``python -m gadget.listen`` (a ``<connect>`` node). The replay CLI and the MRD server call
the same functions with their own connections.

* :func:`handle_acquisitions` takes raw ``ismrmrd.Acquisition`` s (noise scans included).
* :func:`handle_recon_data` takes Gadgetron's buffered ReconData (after BucketToBuffer).
"""

from __future__ import annotations

import logging
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable

from gadget.config import ConfigError, GadgetConfig, config_from_text, config_from_xml
from gadget.geometry import EncodingGeometry
from gadget.pipeline import Connection, RunSummary, run_acquisitions, run_recon_data
from gadget.recon import DiffusionReconstructor, Reconstructor

log = logging.getLogger(__name__)


def handle_acquisitions(
    connection: Connection, reconstructor: Reconstructor | None = None
) -> RunSummary:
    """Reconstruct every slice of a raw acquisition stream and send its images.

    Args:
        connection: a Gadgetron-style connection (``config``, ``header``, iteration, ``send``).
        reconstructor: slice -> Reconstruction; built from the connection's configuration when None.

    Raises ConfigError / HeaderError before reading any data when the configuration or the
    ISMRMRD header cannot be used.
    """
    return _handle(connection, reconstructor, run_acquisitions)


def handle_recon_data(
    connection: Connection, reconstructor: Reconstructor | None = None
) -> RunSummary:
    """Reconstruct Gadgetron's buffered ReconData (one image set per N, S, LOC of each bit)."""
    return _handle(connection, reconstructor, run_recon_data)


def _handle(
    connection: Connection,
    reconstructor: Reconstructor | None,
    run: Callable[[Connection, GadgetConfig, EncodingGeometry, Reconstructor], RunSummary],
) -> RunSummary:
    """Set-up shared by both handlers (validated before any data is read), then ``run``."""
    _guard_socket(connection)
    config, geometry = _read_setup(connection)
    reconstructor = reconstructor or DiffusionReconstructor.from_config(config)
    summary = run(connection, config, geometry, reconstructor)
    _log_summary(summary)
    return summary


def _read_setup(connection: Connection) -> tuple[GadgetConfig, EncodingGeometry]:
    """Configuration and encoding geometry, validated before any data is read."""
    try:
        config = _config_of(connection)
        geometry = EncodingGeometry.from_header(connection.header)
    except ValueError as error:
        log.error("cannot start: %s", error)
        raise
    log.info("configuration: %s", config)
    return config, geometry


def _config_of(connection: Connection) -> GadgetConfig:
    if isinstance(connection.config, ET.Element) or connection.config is None:
        raw = getattr(getattr(connection, "raw_bytes", None), "config", None)
        if connection.config is None and raw and raw.strip():
            return config_from_text(raw)  # gives the XML parse error
        return config_from_xml(connection.config)
    if isinstance(connection.config, GadgetConfig):
        return connection.config
    raise ConfigError(
        f"connection.config: expected an XML element, got {type(connection.config).__name__}"
    )


def _log_summary(summary: RunSummary) -> None:
    log.info("done: %d slices, %d images sent", summary.slices_done, summary.images_sent)
    for failure in summary.failed:
        log.warning("failed %s", failure)


class EofSafeSocket:
    """Gadgetron's socket wrapper, except that a closed peer raises ConnectionError.

    gadgetron 1.4.1's ``SocketWrapper.read`` loops forever when ``recv`` returns b'' (peer gone);
    this keeps its interface (read, write, close) and ends the stream instead.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock

    def read(self, nbytes: int) -> bytes:
        chunks, remaining = [], nbytes
        while remaining:
            chunk = self.socket.recv(remaining, socket.MSG_WAITALL)
            if not chunk:
                raise ConnectionError(
                    f"connection closed by the peer with {remaining} of {nbytes} bytes unread"
                )
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def write(self, data: bytes) -> None:
        self.socket.sendall(data)

    def close(self) -> None:
        from gadgetron.external import constants

        try:
            self.socket.send(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_CLOSE))
        except OSError as error:
            log.debug("could not send CLOSE, peer already gone: %s", error)
        self.socket.close()


def _guard_socket(connection: Connection) -> None:
    """Swap a gadgetron Connection's socket wrapper for :class:`EofSafeSocket` (same socket)."""
    from gadgetron.external.connection import Connection as GadgetronConnection

    if isinstance(connection, GadgetronConnection) and not isinstance(
        connection.socket, EofSafeSocket
    ):
        connection.socket = EofSafeSocket(connection.socket.socket)
