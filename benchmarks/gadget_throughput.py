"""Acquisitions per second through the gadget's stream stages, reconstruction switched off,
beside the gadgetron package's own pass-through example.

    python benchmarks/gadget_throughput.py [--matrix 192] [--coils 8] [--repetitions 20] [--threads 1]

Data: ``ismrmrd_generate_cartesian_shepp_logan`` (readout oversampling 2, noise scan).
Two transports:
* in memory: the handler iterates a list of acquisitions (no serialisation);
* socket: Gadgetron's side of the external interface is played over localhost, the gadget runs
  as ``python -m gadgetron <port> <module> <target>`` exactly as Gadgetron starts it.
"Assembly" = pass-through filter -> noise adjustment -> grouping -> placement + readout
oversampling removal, for every slice, with no reconstruction and no images.
Torch runs with ``--threads`` threads (default 1: on a shared 2-core machine, two threads that
compete with other processes made the per-slice FFTs ten times slower).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import ismrmrd
import torch
from gadgetron.examples import pass_through
from gadgetron.external import constants, readers, writers

from diffusion_core import fft  # noqa: F401  (imported with the module, before the clock starts)
from gadget.assembly import assemble, group_slices
from gadget.geometry import EncodingGeometry
from gadget.handlers import EofSafeSocket
from gadget.stream import cartesian_acquisitions, noise_adjustment

ROOT = Path(__file__).resolve().parents[1]


def assemble_only(connection) -> None:
    """A Gadgetron target: the gadget's stages up to assembled slices, nothing reconstructed."""
    geometry = EncodingGeometry.from_header(connection.header)
    groups = group_slices(
        noise_adjustment(cartesian_acquisitions(iter(connection), connection.send))
    )
    slices = sum(1 for g in groups if assemble(g, geometry) is not None)
    logging.info("assembled %d slices", slices)


class _Memory:
    def __init__(self, header, items) -> None:
        self.config, self.header, self._items, self.sent = None, header, items, 0

    def __iter__(self):
        return iter(self._items)

    def send(self, item) -> None:
        self.sent += 1


def _in_memory(target, header, acquisitions, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        connection = _Memory(header, acquisitions)
        started = time.perf_counter()
        target(connection)
        best = min(best, time.perf_counter() - started)
    return len(acquisitions) / best


def _over_socket(module: str, target: str, xml: bytes, acquisitions) -> float:
    """Acquisitions/s from the first byte sent to the gadget's CLOSE (process start excluded)."""
    server = socket.create_server(("127.0.0.1", 0))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")]),
           "GADGETRON_EXTERNAL_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": str(torch.get_num_threads())}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "gadgetron", str(server.getsockname()[1]), module, target], env=env
    )
    sock, _ = server.accept()
    stream = EofSafeSocket(sock)
    payload = [a.to_bytes() for a in acquisitions]
    mid = constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_ISMRMRD_ACQUISITION)

    stream.write(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_CONFIG))
    writers.write_byte_string(stream, b"<configuration/>")
    stream.write(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_HEADER))
    writers.write_byte_string(stream, xml)

    def send() -> None:
        for data in payload:
            stream.write(mid + data)
        stream.write(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_CLOSE))

    time.sleep(5.0)  # the gadget reads config and header, then imports its module (torch etc.)
    started = time.perf_counter()
    sender = threading.Thread(target=send)
    sender.start()
    while (
        message := readers.read(stream, constants.GadgetMessageIdentifier)
    ) != constants.GADGET_MESSAGE_CLOSE:
        readers.read_acquisition(stream) if message == 1008 else readers.read_image(stream)
    elapsed = time.perf_counter() - started
    sender.join()
    sock.close()
    server.close()
    process.wait(timeout=60)
    return len(acquisitions) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", type=int, default=192)
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (gadget side)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.h5"
        subprocess.run(
            ["ismrmrd_generate_cartesian_shepp_logan", "-m", str(args.matrix), "-c", str(args.coils),
             "-r", str(args.repetitions), "-C", "-o", str(path)],
            check=True, capture_output=True,
        )  # fmt: skip
        with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False, mode="r") as dataset:
            xml = dataset.read_xml_header()
            acquisitions = [
                dataset.read_acquisition(i) for i in range(dataset.number_of_acquisitions())
            ]
    header = ismrmrd.xsd.CreateFromDocument(xml)
    samples = acquisitions[1].data.shape
    print(f"{len(acquisitions)} acquisitions of {samples[0]} coils x {samples[1]} samples "
          f"({args.repetitions} slices of {args.matrix} lines), {os.cpu_count()} CPU cores, "
          f"{args.threads} torch thread(s)")  # fmt: skip
    rows = [
        ("in memory", "gadgetron.examples.pass_through", _in_memory(pass_through, header, acquisitions)),
        ("in memory", "gadget assembly (no recon)", _in_memory(assemble_only, header, acquisitions)),
        ("socket", "gadgetron.examples.pass_through", _over_socket("gadgetron.examples", "pass_through", xml, acquisitions)),
        ("socket", "gadget assembly (no recon)", _over_socket("gadget_throughput", "assemble_only", xml, acquisitions)),
    ]  # fmt: skip
    print(f"| {'transport':<9} | {'stage':<32} | {'acquisitions/s':>14} |")
    print(f"|{'-' * 11}|{'-' * 34}|{'-' * 16}|")
    for transport, stage, rate in rows:
        print(f"| {transport:<9} | {stage:<32} | {rate:>14,.0f} |")


if __name__ == "__main__":
    main()
