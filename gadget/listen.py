"""Wait for Gadgetron to connect (a ``<connect port=... address=...>`` node) and run a handler.

    python -m gadget.listen PORT [handle_acquisitions|handle_recon_data]
        [--host HOST] [--config FILE] [--max-connections N] [--once]

Serves many Gadgetron connections at once, each in its own thread with its own stream state,
all sharing one loaded prior (:class:`gadget.recon.PriorCache`). CONFIG and HEADER are read with
a deadline and length caps; a connection that fails there gets ERROR then CLOSE and the listener
goes on. ``--config`` gives the properties used where Gadgetron sends none (the workers of
``xml_configs/diffusion_distributed.xml``: Gadgetron's re-serialization drops ``<configuration>``);
properties Gadgetron does send override them one by one.
"""

from __future__ import annotations

import argparse
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gadget import handlers
from gadget.config import ConfigError, GadgetConfig, config_from_text
from gadget.gadgetron_protocol import BoundedSocket, GadgetronConnection, Limits, fail
from gadget.recon import PriorCache

TARGETS = ("handle_acquisitions", "handle_recon_data")
log = logging.getLogger("gadget.listen")

Handler = Callable[[GadgetronConnection], object]


class Listener:
    """A TCP listener that runs ``handler`` on each Gadgetron connection in its own thread.

    Args:
        address: (host, port) to bind; port 0 picks a free one (see :attr:`address`).
        handler: called with each connection once CONFIG and HEADER are read.
        limits: deadlines and caps of each connection.
        max_connections: connections served at once; one more is answered ERROR + CLOSE.
    """

    def __init__(
        self,
        address: tuple[str, int],
        handler: Handler,
        limits: Limits | None = None,
        max_connections: int = 16,
    ) -> None:
        self.handler = handler
        self.limits = limits or Limits()
        self._slots = threading.BoundedSemaphore(max_connections)
        self.max_connections = max_connections
        dual = address[0] == "" and socket.has_dualstack_ipv6()
        self._socket = socket.create_server(
            address,
            family=socket.AF_INET6 if dual else socket.AF_INET,
            backlog=max(64, max_connections),
            dualstack_ipv6=dual,
        )
        self._stopped = threading.Event()
        self.served = 0

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return host, port

    def serve_forever(self, once: bool = False) -> None:
        """Accept until :meth:`shutdown` (or after one connection with ``once``)."""
        while not self._stopped.is_set():
            try:
                sock, peer = self._socket.accept()
            except OSError as error:
                if self._stopped.is_set():
                    break
                log.warning("accept failed (%s); still listening", error)  # e.g. out of fds
                time.sleep(0.1)
                continue
            thread = threading.Thread(
                target=self._serve, args=(sock, f"{peer[0]}:{peer[1]}"), daemon=True
            )
            thread.start()
            if once:
                thread.join()
                break

    def shutdown(self) -> None:
        self._stopped.set()
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._socket.close()

    def _serve(self, sock: socket.socket, peer: str) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("%s: refused, %d connections are being served", peer, self.max_connections)
            fail(
                BoundedSocket(sock),
                ConnectionError(
                    f"gadgetron-diffusion listener busy: {self.max_connections} connections are "
                    "being served; expected fewer at once (--max-connections)"
                ),
            )
            return
        try:
            self._session(sock, peer)
        finally:
            self._slots.release()

    def _session(self, sock: socket.socket, peer: str) -> None:
        log.info("%s: connected", peer)
        try:
            connection = GadgetronConnection(sock, self.limits)
        except (ValueError, ConnectionError) as error:
            log.error("%s: cannot start: %s", peer, error)
            fail(BoundedSocket(sock), error)
            return
        try:
            self.handler(connection)
        except (ValueError, RuntimeError) as error:
            log.error("%s: %s", peer, error)  # the handler has sent it as ERROR
        except Exception as error:  # a listener survives any client
            log.exception("%s: session failed", peer)
            handlers.report_error(
                connection, f"gadgetron-diffusion: {type(error).__name__}: {error}"
            )
        finally:
            connection.close()
            self.served += 1
        log.info("%s: done", peer)


def _defaults(path: Path | None) -> GadgetConfig:
    if path is None:
        return GadgetConfig()
    try:
        return config_from_text(path.read_bytes())
    except OSError as error:
        raise ConfigError(f"--config {path}: {error.strerror}") from None
    except ConfigError as error:
        raise ConfigError(f"--config {path}: {error}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gadget.listen", description=__doc__.splitlines()[0]
    )
    parser.add_argument("port", type=int, help="TCP port to listen on")
    parser.add_argument(
        "target",
        nargs="?",
        choices=TARGETS,
        default=TARGETS[0],
        help="handler (default: %(default)s)",
    )
    parser.add_argument("--host", default="", help="address to bind (default: all interfaces)")
    parser.add_argument(
        "--config",
        type=Path,
        help="Gadgetron XML (<configuration> with <property> elements, or a chain) whose "
        "properties apply where Gadgetron sends none",
    )
    parser.add_argument("--max-connections", type=int, default=16, help="default: %(default)s")
    parser.add_argument("--once", action="store_true", help="serve one connection, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        defaults = _defaults(args.config)
    except ConfigError as error:
        log.error("%s", error)
        return 2
    handler = functools.partial(
        getattr(handlers, args.target), priors=PriorCache(), defaults=defaults
    )
    listener = Listener((args.host, args.port), handler, max_connections=args.max_connections)
    log.info("listening on port %d (%s)", listener.address[1], args.target)
    try:
        listener.serve_forever(once=args.once)
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        listener.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
