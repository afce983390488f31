"""Play one :class:`~fuzzkit.wire.Wire` to ``serve``, ``gadget.listen`` or execute mode; judge it.

A cut ``serve`` stream (EOF before the client's CLOSE) is an abandoned session: serve stops
computing by design, so nothing is owed back (it must still end without a hang or crash).
Servers run as the real entry points (``python -m gadget.cli serve``, ``python -m gadget.listen``)
and are restarted when a case kills or wedges them. A session whose peer closed must close its
side within the bound: a server socket left in CLOSE_WAIT, or an execute-mode process still
running, is a hang. After each case a valid minimal session (configuration, header, CLOSE) must
be served, or the listener has stopped serving (a hang).
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import ismrmrd

from fuzzkit import wire
from fuzzkit.procs import ENV, MEMORY_CAP_MB, rss_mb
from fuzzkit.rules import Outcome, count_lost, is_clear, unclear_messages
from fuzzkit.wire import Wire

EXECUTE_EXIT_CODES = (0, 1)


@dataclass
class Reply:
    data: bytes = b""
    eof: bool = False
    reset: bool = False
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)


def _sockets_in_close_wait(port: int) -> int:
    """Server-side sockets on ``port`` whose peer has closed but that are still open."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            parts = row.split()
            if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "08":
                count += 1
    return count


def _listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(
            int(r.split()[1].rsplit(":", 1)[1], 16) == port and r.split()[3] == "0A" for r in rows
        ):
            return True
    return False


def exchange(
    sock: socket.socket,
    payload: Wire,
    bound: float,
    watch_pid: int | None,
    shut_write: bool = True,
) -> Reply:
    """Send the wire's bytes (from a thread), end as it says, read the reply until EOF or the
    bound; sample the server's memory meanwhile. ``shut_write=False`` keeps the sending side
    open after a ``half-close`` wire, as MRD clients do until the server's CLOSE."""
    reply = Reply()
    started = time.monotonic()

    def send() -> None:
        try:
            sock.sendall(payload.data)
            if payload.ending == "half-close" and shut_write:
                sock.shutdown(socket.SHUT_WR)
        except OSError as error:
            reply.notes.append(f"send stopped: {error}")

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    if payload.ending == "close":
        sender.join(timeout=bound)
        sock.close()
        reply.seconds = time.monotonic() - started
        return reply
    chunks: list[bytes] = []
    sock.settimeout(0.2)
    while time.monotonic() - started < bound:
        if watch_pid:
            reply.peak_rss_mb = max(reply.peak_rss_mb, rss_mb(watch_pid))
            if reply.peak_rss_mb > MEMORY_CAP_MB:
                reply.notes.append("server over the memory cap")
                break
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            continue
        except ConnectionResetError:
            reply.eof = reply.reset = True
            break
        if not chunk:
            reply.eof = True
            break
        chunks.append(chunk)
    reply.data = b"".join(chunks)
    reply.seconds = time.monotonic() - started
    sender.join(timeout=1)
    sock.close()
    return reply


def parse_reply(data: bytes) -> tuple[list[object], bool, list[str]]:
    """Items, whether CLOSE came, TEXT and ERROR messages: the gadget's reply on either
    protocol."""
    from gadgetron.external import readers

    source = io.BytesIO(data)
    items: list[object] = []
    texts: list[str] = []
    while True:
        head = source.read(2)
        if len(head) < 2:
            return items, False, texts
        mid = int.from_bytes(head, "little")
        try:
            if mid == wire.CLOSE:
                return items, True, texts
            if mid == wire.ACQUISITION:
                items.append(readers.read_acquisition(source))
            elif mid == wire.IMAGE:
                items.append(readers.read_image(source))
            elif mid == wire.WAVEFORM:
                items.append(readers.read_waveform(source))
            elif mid == wire.TEXT:
                texts.append(readers.read_byte_string(source).decode(errors="replace"))
            elif mid == wire.ERROR:  # how the Gadgetron side says why, before its CLOSE
                length = int.from_bytes(source.read(8), "little")
                body = source.read(length)
                if len(body) < length:
                    raise ValueError(f"ERROR body cut ({len(body)} of {length} bytes)")
                texts.append("ERROR: " + body.decode(errors="replace"))
            else:
                texts.append(f"(reply message id {mid} not understood)")
                return items, False, texts
        except Exception as error:
            texts.append(f"(reply cut inside message id {mid}: {error})")
            return items, False, texts


def traceback_summary(log: str) -> str:
    """The exception line that ends the first traceback in ``log``."""
    lines = log.splitlines()
    start = next(i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line)
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            return line[:300]
    return "(cut)"


def judge(outcome: Outcome, payload: Wire, reply: Reply, log: str) -> None:
    """Hang / crash / lost / unclear from the reply and the entry point's log of this case."""
    outcome.seconds = reply.seconds
    outcome.peak_rss_mb = max(outcome.peak_rss_mb, reply.peak_rss_mb)
    outcome.notes += reply.notes
    lines = [line for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if " ERROR " in line or " CRITICAL " in line]
    texts: list[str] = []
    items: list[object] = []
    if payload.ending == "half-close":
        if not reply.eof:
            outcome.hang = True
            outcome.notes.append("no end of the reply within the bound")
        items, closed, texts = parse_reply(reply.data)
        if reply.eof and not closed and not reply.reset:
            outcome.crash = True
            outcome.notes.append("session ended without CLOSE")
        if payload.setup_intact:
            outcome.lost = count_lost(payload.expected, items)
            if outcome.lost:
                outcome.notes.append(
                    f"{outcome.lost} of {len(payload.expected)} items neither imaged nor returned"
                )
    outcome.unclear += unclear_messages(errors)
    # what the client is told (serve's "ERROR: ..." TEXT, the Gadgetron side's ERROR message)
    outcome.unclear += [
        f"to the client: {t}" for t in texts if t.startswith("ERROR") and not is_clear(t)
    ]
    if "Traceback (most recent call last)" in log:
        outcome.unclear.append("traceback in the log: " + traceback_summary(log))
    imaged = any(isinstance(i, ismrmrd.Image) and i.image_series_index != 99 for i in items)
    if not payload.setup_intact and not imaged and not any(is_clear(m) for m in [*lines, *texts]):
        outcome.unclear.append(
            "refused or broken stream without a clear error in the log or a TEXT"
        )
    if errors:
        outcome.notes.append(" | ".join(e.split(": ", 1)[-1] for e in errors)[:400])


class Server:
    """A long-running listener (``serve`` or ``gadget.listen``) with its log in a file."""

    def __init__(self, kind: str, folder: Path, properties: dict[str, str]) -> None:
        self.kind, self.folder, self.properties = kind, folder, properties
        self.process: subprocess.Popen | None = None
        self.log_path = folder / f"{kind}.log"
        self.restarts = -1

    def command(self, port: int) -> list[str]:
        p = self.properties
        if self.kind == "mrd":  # a client that stores what is not reconstructed (FIRE's client)
            return [sys.executable, "-m", "gadget.cli", "serve", "--host", "127.0.0.1", "--port",
                    str(port), "--sampler", p["sampler"], "--nfe", p["nfe"], "--samples",
                    p["num_samples"], "--cg-iters", p["cg_iters"], "--checkpoint", p["checkpoint"],
                    "--device", "cpu", "--return-unprocessed"]  # fmt: skip
        return [sys.executable, "-m", "gadget.listen", str(port), "handle_acquisitions"]

    def start(self) -> None:
        self.stop()
        self.restarts += 1
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        log = open(self.log_path, "ab")  # the process writes it; closed here once it is started
        self.process = subprocess.Popen(
            self.command(self.port),
            stdout=log,
            stderr=log,
            env=ENV,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 120
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} did not start: {self.log_text(0)[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_text(self, start: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    def connect(self) -> socket.socket:
        host = "127.0.0.1" if self.kind == "mrd" else "localhost"
        return socket.create_connection((host, self.port), timeout=10)


def _probe_wire(kind: str, properties: dict[str, str], header: bytes) -> Wire:
    from fuzzkit.stream_cases import configuration

    if kind == "mrd":
        setup = wire.mrd_setup("default.xml", header, nul=False)
    else:
        setup = wire.gadgetron_setup(configuration(properties), header)
    return wire.assemble("probe", [*setup, wire.close_frame()])


def run_server_case(server: Server, payload: Wire, bound: float, header: bytes) -> Outcome:
    """``payload`` to a running server, then the probe; restarts the server if it is wedged."""
    category = "serve" if server.kind == "mrd" else "gadgetron-listen"
    outcome = Outcome(category, payload.name)
    if not server.alive():
        server.start()
    start = server.log_size()
    try:
        sock = server.connect()
    except OSError as error:
        outcome.crash = True
        outcome.notes.append(f"cannot connect: {error}")
        server.start()
        return outcome
    # serve takes EOF for a client that has gone (gadget/server.py, ClientWatch): a stream
    # that ends with the client's CLOSE keeps its socket open, as FIRE's client and
    # gadgetron_ismrmrd_client do; a cut stream half-closes (an abandoned session, see judge)
    shut_write = server.kind != "mrd" or not payload.sends_close
    pid = server.process.pid if server.process else None
    reply = exchange(sock, payload, bound, pid, shut_write)
    if payload.ending == "close":
        deadline = time.monotonic() + bound
        while _sockets_in_close_wait(server.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _sockets_in_close_wait(server.port):
            outcome.hang = True
            outcome.notes.append("session still open after the client closed")
        reply.seconds = bound if outcome.hang else reply.seconds
    if not outcome.hang:
        probe = _probe(server, bound, header)
        if probe:
            outcome.hang = True
            outcome.notes.append(probe)
    time.sleep(0.05)
    judge(outcome, payload, reply, server.log_text(start))
    if server.kind == "mrd" and not payload.sends_close and outcome.lost:
        # serve, by design (gadget/server.py, ClientWatch): an MRD client keeps its socket open
        # until the server's CLOSE, so EOF before the client's CLOSE means it has gone and the
        # session stops computing; nothing is owed to it (it must still end and not crash)
        outcome.notes.append(f"abandoned session: {outcome.lost} items not owed")
        outcome.lost = 0
    if not server.alive():
        outcome.crash = True
        outcome.notes.append(f"{server.kind} process died (exit {server.process.returncode})")
    if outcome.hang or not server.alive():
        server.start()
    return outcome


def _probe(server: Server, bound: float, header: bytes) -> str:
    """'' if the server serves a valid minimal session, else what went wrong."""
    deadline = time.monotonic() + bound
    while True:  # a listener may take a moment to listen again after a connection
        try:
            sock = server.connect()
            break
        except OSError as error:
            if time.monotonic() > deadline or not server.alive():
                return f"next connection refused for {bound:.0f} s: {error}"
            time.sleep(0.2)
    probe = _probe_wire(server.kind, server.properties, header)
    reply = exchange(sock, probe, bound, None, shut_write=server.kind != "mrd")
    _, closed, _ = parse_reply(reply.data)
    return "" if closed else "the next (valid) session was not served"


def run_execute_case(payload: Wire, bound: float, startup: float = 90) -> Outcome:
    """``payload`` to ``python -m gadgetron PORT gadget.handlers handle_acquisitions``.

    The reply may take three bounds: the process loads the prior after it has connected."""
    outcome = Outcome("gadgetron-execute", payload.name)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(startup)
    port = listener.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "gadgetron",
        str(port),
        "gadget.handlers",
        "handle_acquisitions",
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=ENV,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(process.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        try:
            sock, _ = listener.accept()
        except TimeoutError:
            outcome.crash = True
            outcome.notes.append("the gadget never connected")
            return outcome
        finally:
            listener.close()
        reply = exchange(sock, payload, 3 * bound, process.pid)
        try:
            process.wait(timeout=bound if reply.eof or payload.ending == "close" else 1)
        except subprocess.TimeoutExpired:
            outcome.hang = True
            outcome.notes.append("process still running after the connection is gone")
            reply.seconds += bound
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    log = b"".join(output).decode(errors="replace")
    judge(outcome, payload, reply, log)
    if not outcome.hang and process.returncode not in EXECUTE_EXIT_CODES:
        outcome.crash = True
        outcome.notes.append(f"exit code {process.returncode}")
    return outcome
