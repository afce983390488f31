"""The gadget driven the way Gadgetron drives it, over a real socket.

Gadgetron's side is played with the gadgetron package's own readers and writers: in ``execute``
mode the test listens and spawns ``python -m gadgetron <port> gadget.handlers <target>``; in
``connect`` mode it spawns ``python -m gadget.listen`` and connects to it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import ismrmrd
import numpy as np
import pytest
from gadget_helpers import (
    MATRIX,
    SocketStream,
    acquisitions_of,
    configuration_xml,
    free_port,
    play_gadgetron,
)
from gadgetron.external import constants, writers
from gadgetron.types.recon_data import ReconBit, ReconBuffer, ReconData, SamplingDescription

from gadget.assembly import group_slices
from gadget.stream import cartesian_acquisitions, noise_adjustment

pytestmark = pytest.mark.timeout(120)


class Gadget:
    """A gadget process and, once it has ended, its exit code and log."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.returncode: int | None = None
        self.output = ""

    def finish(self, timeout: float = 30) -> None:
        try:
            self.output, _ = self.process.communicate(timeout=timeout)
        finally:
            self.process.kill()
            self.process.communicate()
        self.returncode = self.process.returncode


@contextmanager
def execute_mode(target: str) -> Iterator[tuple[socket.socket, Gadget]]:
    """Listen like Gadgetron, start the gadget with ``python -m gadgetron``, yield the socket."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(60)
    port = server.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "gadgetron", str(port), "gadget.handlers", target],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    gadget = Gadget(process)
    try:
        sock, _ = server.accept()
        sock.settimeout(60)
        with sock:
            yield sock, gadget
    finally:
        server.close()
        gadget.finish()


def _check_images(images: list[object], repetitions: int) -> None:
    assert len(images) == 2 * repetitions  # mean and std per slice
    assert all(isinstance(i, ismrmrd.Image) for i in images)
    means = [i for i in images if i.image_series_index == 1]
    assert [m.repetition for m in means] == list(range(repetitions))
    # the header's (x, y, z): Image.matrix_size is transposed (and warns) in ismrmrd 1.14
    assert all(tuple(m.getHead().matrix_size) == (MATRIX, MATRIX, 1) for m in means)
    assert all(m.data.max() > 0 for m in means)


def test_execute_mode_with_acquisitions_and_pass_through(accelerated_file, fast_properties) -> None:
    xml, acquisitions = acquisitions_of(accelerated_file)
    waveform = ismrmrd.Waveform.from_array(np.arange(8, dtype=np.uint32).reshape(1, 8))
    with execute_mode("handle_acquisitions") as (sock, gadget):
        received = play_gadgetron(
            sock, configuration_xml(fast_properties), xml, [waveform, *acquisitions]
        )
    assert gadget.returncode == 0, gadget.output[-3000:]
    waveforms = [r for r in received if isinstance(r, ismrmrd.Waveform)]
    assert len(waveforms) == 1 and (waveforms[0].data == np.arange(8)).all()
    _check_images([r for r in received if isinstance(r, ismrmrd.Image)], repetitions=2)


def _buffer(acquisitions, encoded_x: int, encoded_y: int, centre: int) -> ReconBuffer:
    """A BucketToBuffer-style buffer (RO, E1, E2, CHA, N, S, LOC) of one N/S/LOC."""
    data = np.zeros((encoded_x, encoded_y, 1, 4, 1, 1, 1), dtype=np.complex64)
    headers = np.empty((encoded_y, 1, 1, 1, 1), dtype=object)
    for e1 in range(encoded_y):
        headers[e1, 0, 0, 0, 0] = ismrmrd.AcquisitionHeader()
    for acq in acquisitions:
        e1 = acq.idx.kspace_encode_step_1
        data[:, e1, 0, :, 0, 0, 0] = acq.data.T
        headers[e1, 0, 0, 0, 0] = acq.getHead()
    sampling = SamplingDescription()
    sampling.encoded_matrix[:] = (encoded_x, encoded_y, 1)
    sampling.sampling_limits[0].min, sampling.sampling_limits[0].max = 0, encoded_x - 1
    sampling.sampling_limits[0].center = encoded_x // 2
    sampling.sampling_limits[1].min, sampling.sampling_limits[1].max = 0, encoded_y - 1
    sampling.sampling_limits[1].center = centre
    return ReconBuffer(data, None, None, headers, sampling)


def _recon_data(path) -> tuple[bytes, list[ReconData]]:
    """What BucketToBuffer would send for each repetition (readout oversampling kept), with the
    calibration (ACS) lines in a reference buffer."""
    xml, acquisitions = acquisitions_of(path)
    header = ismrmrd.xsd.CreateFromDocument(xml)
    encoded = header.encoding[0].encodedSpace.matrixSize
    centre = header.encoding[0].encodingLimits.kspace_encoding_step_1.center
    items = []
    for group in group_slices(
        noise_adjustment(cartesian_acquisitions(acquisitions, list().append))
    ):
        acs = [
            a
            for a in group.acquisitions
            if a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
            or a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
        ]
        assert len(acs) == 12
        data = _buffer(group.acquisitions, encoded.x, encoded.y, centre)
        ref = _buffer(acs, encoded.x, encoded.y, centre)
        items.append(ReconData([ReconBit(data, ref)]))
    return xml, items


def test_execute_mode_with_buffered_recon_data(accelerated_file, fast_properties) -> None:
    xml, items = _recon_data(accelerated_file)
    with execute_mode("handle_recon_data") as (sock, gadget):
        received = play_gadgetron(sock, configuration_xml(fast_properties), xml, items)
    assert gadget.returncode == 0, gadget.output[-3000:]
    _check_images(received, repetitions=2)


def test_bad_property_stops_before_data(accelerated_file, fast_properties) -> None:
    xml, acquisitions = acquisitions_of(accelerated_file)
    with execute_mode("handle_acquisitions") as (sock, gadget):
        received = play_gadgetron(
            sock, configuration_xml({**fast_properties, "nfe": "many"}), xml, acquisitions[:3]
        )
    assert len(received) == 1 and "property 'nfe': expected an integer, got 'many'" in received[0]
    assert gadget.returncode == 1 and "property 'nfe': expected an integer" in gadget.output
    assert "Traceback" not in gadget.output  # a handled input error, not a crash


def test_dropped_connection_ends_the_gadget(accelerated_file, fast_properties) -> None:
    xml, acquisitions = acquisitions_of(accelerated_file)
    with execute_mode("handle_acquisitions") as (sock, gadget):
        stream = SocketStream(sock)
        stream.write(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_CONFIG))
        writers.write_byte_string(stream, configuration_xml(fast_properties))
        stream.write(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_HEADER))
        writers.write_byte_string(stream, xml)
        for acq in acquisitions[:10]:
            writers.write_acquisition(stream, acq)
        stream.write(
            constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_ISMRMRD_ACQUISITION)
        )
        stream.write(acquisitions[10].to_bytes()[:100])  # half a message, then the peer is gone
        sock.shutdown(socket.SHUT_RDWR)
    assert gadget.returncode is not None  # finish() waited at most 30 s
    assert "connection closed by the peer" in gadget.output, gadget.output


@pytest.mark.parametrize("after", ["header", "three acquisitions"])
def test_execute_mode_exits_when_gadgetron_closes(accelerated_file, fast_properties, after) -> None:
    """The peer closes without CLOSE after the header: the process ends (not spinning)."""
    xml, acquisitions = acquisitions_of(accelerated_file)
    with execute_mode("handle_acquisitions") as (sock, gadget):
        stream = SocketStream(sock)
        stream.write(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_CONFIG))
        writers.write_byte_string(stream, configuration_xml(fast_properties))
        stream.write(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_HEADER))
        writers.write_byte_string(stream, xml)
        for acq in acquisitions[: 3 if after != "header" else 0]:
            writers.write_acquisition(stream, acq)
        sock.shutdown(socket.SHUT_WR)
        started = time.monotonic()
        gadget.finish(timeout=60)
    assert gadget.returncode is not None and time.monotonic() - started < 60
    assert "connection closed by the peer" in gadget.output, gadget.output[-2000:]


def test_listen_mode(accelerated_file, fast_properties) -> None:
    xml, acquisitions = acquisitions_of(accelerated_file)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gadget.listen", str(port), "handle_acquisitions", "--once"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    gadget = Gadget(process)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                sock = socket.create_connection(("localhost", port), timeout=60)
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, (
                    "gadget.listen did not start"
                )
                time.sleep(0.2)
        with sock:
            received = play_gadgetron(sock, configuration_xml(fast_properties), xml, acquisitions)
    finally:
        gadget.finish()
    assert gadget.returncode == 0, gadget.output[-3000:]
    _check_images(received, repetitions=2)
