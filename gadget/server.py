"""MRD streaming server: python-ismrmrd-server (FIRE) clients and ``gadgetron_ismrmrd_client``.

Each connection is a session in its own thread with its own connection, configuration, noise
statistics and slice buffers; the prior is shared (one per checkpoint and device, through
:class:`gadget.recon.PriorCache`). A session ends with CLOSE whatever happened; anything that
went wrong is first sent as a TEXT message naming it. What is sent back:

* IMAGE, TEXT, CLOSE to every client (both clients read them);
* the acquisitions and waveforms the gadget does not reconstruct only with
  ``return_unprocessed`` (python-ismrmrd-server's client stores them;
  ``gadgetron_ismrmrd_client`` stops with "Unknown Message ID" at them) -- otherwise a closing
  TEXT counts them.

A client that goes away stops its session: the sampler's progress callback and every slice
check the socket (:class:`ClientWatch`) and end the computation.
"""

from __future__ import annotations

import logging
import select
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ismrmrd

from gadget.assembly import AssembledSlice
from gadget.config import GadgetConfig
from gadget.connections import MrdStreamConnection
from gadget.mrd_config import ServerConfig, SessionError, session_config
from gadget.mrd_framing import TEXT, FramingError, ReadTimeout, close_frame, text_frame
from gadget.noise_file import prepend_noise
from gadget.recon import DiffusionReconstructor, PriorCache, Reconstructor, choose_device

log = logging.getLogger(__name__)

LINGER_S = 2.0  # after CLOSE: how long the client's unread bytes are drained before closing


class ClientGone(ConnectionError):
    """The client closed or reset its connection while its session was computing."""


class ClientWatch:
    """Tells whether a session's client is still there, without reading its data.

    ``check`` (also usable as the sampler's progress callback) raises ClientGone once the
    client has closed or reset the socket: EOF or an error on a non-blocking MSG_PEEK.
    MRD clients keep their socket open until the server's CLOSE, so EOF means gone.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.gone: str | None = None

    def check(self, *_progress: object) -> None:
        if self.gone is None:
            self.gone = self._probe()
        if self.gone is not None:
            raise ClientGone(self.gone)

    def _probe(self) -> str | None:
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
            if not readable:
                return None
            data = self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except (OSError, ValueError) as error:
            return f"connection error ({error})"
        return None if data else "the client closed its connection"


class _Watched:
    """A reconstructor that first checks that the client is still there."""

    def __init__(self, reconstructor: Reconstructor, watch: ClientWatch) -> None:
        self._reconstructor = reconstructor
        self._watch = watch

    def __call__(self, assembled: AssembledSlice) -> Any:
        self._watch.check()
        return self._reconstructor(assembled)


ReconstructorFactory = Callable[[GadgetConfig, ClientWatch], Reconstructor]


def diffusion_factory(priors: PriorCache) -> ReconstructorFactory:
    """Sessions reconstruct with DiffusionReconstructor, sharing the loaded priors."""

    def make(config: GadgetConfig, watch: ClientWatch) -> Reconstructor:
        return DiffusionReconstructor.from_config(config, watch.check, priors=priors)

    return make


class _Session:
    """The handler's view of a session: the connection, with the noise file fed ahead."""

    def __init__(
        self, connection: MrdStreamConnection, noise: Sequence[ismrmrd.Acquisition]
    ) -> None:
        self.connection = connection
        self.header = connection.header
        self.config = connection.config
        self._noise = noise

    def __iter__(self) -> Iterator[object]:
        return prepend_noise(self.connection, self._noise)

    def send(self, item: object) -> None:
        self.connection.send(item)


class MrdServer(socketserver.ThreadingTCPServer):
    """A threading TCP server of MRD sessions.

    Args:
        address: (host, port) to bind; port 0 picks a free one.
        config: configurations, allowed priors, caps (:class:`gadget.mrd_config.ServerConfig`).
        noise: noise lines of a separate noise measurement, fed to sessions without their own.
        reconstructor_factory: builds each session's reconstructor; default: the diffusion
            reconstructor with this server's :attr:`priors`.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 32

    def __init__(
        self,
        address: tuple[str, int],
        config: ServerConfig,
        noise: Sequence[ismrmrd.Acquisition] = (),
        reconstructor_factory: ReconstructorFactory | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.config = config
        self.noise = tuple(noise)
        self.priors = PriorCache()
        self.make_reconstructor = reconstructor_factory or diffusion_factory(self.priors)
        self._slots = threading.BoundedSemaphore(config.limits.max_sessions)

    def run_session(self, sock: socket.socket, peer: str) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning(
                "client %s refused: %d sessions running", peer, self.config.limits.max_sessions
            )
            _send_quietly(
                sock,
                text_frame(
                    TEXT,
                    f"ERROR: server busy ({self.config.limits.max_sessions} sessions "
                    "running); try again later\n",
                )
                + close_frame(),
            )
            return
        try:
            _serve_session(self, sock, peer)
        finally:
            self._slots.release()


class _Handler(socketserver.BaseRequestHandler):
    server: MrdServer

    def handle(self) -> None:
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        log.info("client %s connected", peer)
        started = time.monotonic()
        try:
            self.server.run_session(self.request, peer)
        except Exception:  # the listener must survive any client
            log.exception("client %s: session failed", peer)
        finally:
            _linger(self.request)
        log.info("client %s done after %.1f s", peer, time.monotonic() - started)


def _serve_session(server: MrdServer, sock: socket.socket, peer: str) -> None:
    limits = server.config.limits
    try:
        connection = MrdStreamConnection(
            sock, limits.frame_limits(), return_unprocessed=server.config.return_unprocessed
        )
    except ConnectionError as error:
        log.info("client %s left before its session started: %s", peer, error)
        _send_quietly(sock, close_frame())
        return
    except (SessionError, FramingError, ReadTimeout) as error:
        log.error("client %s: cannot start: %s", peer, error)
        _send_quietly(sock, text_frame(TEXT, f"ERROR: {error}\n") + close_frame())
        return
    try:
        _run(server, connection, sock, peer)
    except OSError as error:  # the client left while we were writing to it
        log.info("client %s gone: %s", peer, error)
    finally:
        try:
            connection.close()
        except OSError as error:
            log.info("client %s gone before CLOSE (%s)", peer, error)


def _run(
    server: MrdServer, connection: MrdStreamConnection, sock: socket.socket, peer: str
) -> None:
    from gadget.geometry import EncodingGeometry
    from gadget.handlers import handle_acquisitions

    try:
        resolved = session_config(
            server.config, connection.configuration, connection.json_parameters
        )
        server.config.limits.check_header(connection.header)
        EncodingGeometry.from_header(connection.header)
    except ValueError as error:
        log.error("client %s: cannot start: %s", peer, error)
        connection.send_text(f"ERROR: {error}")
        return
    for note in resolved.notes:
        log.warning("client %s: %s", peer, note)
        connection.send_text(f"WARNING: {note}")
    connection.config = resolved.config
    watch = ClientWatch(sock)
    try:
        reconstructor = server.make_reconstructor(resolved.config, watch)
    except Exception as error:
        log.exception("client %s: cannot load the prior", peer)
        connection.send_text(f"ERROR: cannot load the prior ({type(error).__name__}: {error})")
        return
    try:
        summary = handle_acquisitions(
            _Session(connection, server.noise), _Watched(reconstructor, watch)
        )
    except ValueError as error:  # ConfigError / HeaderError, raised before any data is read
        connection.send_text(f"ERROR: {error}")
        return
    except Exception as error:
        log.exception("client %s: session failed", peer)
        connection.send_text(f"ERROR: internal error ({type(error).__name__}: {error})")
        return
    if watch.gone is not None:
        log.info("client %s: %s; stopped computing", peer, watch.gone)
        return
    if connection.ended is not None:
        log.warning("client %s: stream ended early: %s", peer, connection.ended)
        connection.send_text(
            f"ERROR: the stream ended early: {connection.ended}; the lines received were "
            f"reconstructed ({summary.slices_done} slices)"
        )
    for failure in summary.failed:
        connection.send_text(f"WARNING: not reconstructed: {failure}")
    if summary.stream_error:
        connection.send_text(f"ERROR: {summary.stream_error}")
    if connection.held_back:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(connection.held_back.items()))
        connection.send_text(
            f"INFO: not reconstructed and not sent back: {kinds} (server option "
            "--return-unprocessed sends them)"
        )
    connection.send_text(
        f"INFO: {summary.slices_done} slices reconstructed, {summary.images_sent} images sent"
    )


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.settimeout(5.0)
        sock.sendall(data)
    except OSError as error:
        log.debug("could not send to a departed client: %s", error)


def _linger(sock: socket.socket) -> None:
    """Half-close, then read what the client still sends for a moment, so that closing does not
    reset the connection before it has read our TEXT and CLOSE."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    deadline = time.monotonic() + LINGER_S
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(1 << 16):
                return
    except OSError:
        return


def serve(
    host: str,
    port: int,
    config: ServerConfig,
    noise: Sequence[ismrmrd.Acquisition] = (),
    ready: threading.Event | None = None,
) -> None:
    """Load the default prior, then serve until interrupted (Ctrl-C).

    Raises (before listening) what loading the default prior raises: CheckpointError, or
    RuntimeError when its device is not available; OSError when the address cannot be bound.
    """
    with MrdServer((host, port), config, noise) as server:
        server.priors.get(config.default, choose_device(config.default.device))
        log.info(
            "MRD server listening on %s:%d; configurations %s; priors %s",
            host,
            server.server_address[1],
            list(config.names),
            list(config.allowed_checkpoints) or ["shipped"],
        )
        if ready is not None:
            ready.set()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            log.info("stopped")
