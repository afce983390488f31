"""MRD streaming server: the protocol of ``gadgetron_ismrmrd_client`` and python-ismrmrd-server (FIRE).

Each client connection runs in its own thread with its own connection, configuration, noise
statistics, slice buffers and prior, and gets CLOSE at the end whatever happened.
"""

from __future__ import annotations

import logging
import socketserver
import threading
from typing import BinaryIO, cast

from ismrmrd.serialization import ProtocolSerializer

from gadget.config import GadgetConfig
from gadget.connections import MrdStreamConnection
from gadget.handlers import handle_acquisitions

log = logging.getLogger(__name__)


class _Session(socketserver.StreamRequestHandler):
    server: MrdServer

    def handle(self) -> None:
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        log.info("client %s connected", peer)
        try:
            connection = MrdStreamConnection(
                cast(BinaryIO, self.rfile), cast(BinaryIO, self.wfile), self.server.default_config
            )
        except (ValueError, ConnectionError) as error:
            log.error("client %s: cannot start: %s", peer, error)
            try:
                ProtocolSerializer(self.wfile).close()
            except OSError:
                pass
            return
        try:
            handle_acquisitions(connection)
        except Exception:
            log.exception("client %s: session failed", peer)
        finally:
            try:
                connection.close()
            except OSError as error:
                log.info("client %s: gone before CLOSE (%s)", peer, error)
        log.info("client %s done", peer)


class MrdServer(socketserver.ThreadingTCPServer):
    """A threading TCP server; ``default_config`` applies to clients that name a configuration
    (CONFIG_FILE) instead of sending one (CONFIG_TEXT)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], default_config: GadgetConfig) -> None:
        super().__init__(address, _Session)
        self.default_config = default_config


def serve(
    host: str, port: int, default_config: GadgetConfig, ready: threading.Event | None = None
) -> None:
    """Serve until interrupted (Ctrl-C)."""
    with MrdServer((host, port), default_config) as server:
        log.info("MRD server listening on %s:%d", host, server.server_address[1])
        if ready is not None:
            ready.set()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            log.info("stopped")
