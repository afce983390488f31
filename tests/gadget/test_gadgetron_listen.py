"""Listen (connect) mode under faults: bytes framed as Gadgetron frames them, over real sockets.

Gadgetron's side: CONFIG (id 2) and HEADER (id 3) with uint32 lengths, data messages, CLOSE
(id 4); it reads ERROR (id 8) with a uint64 length. The listener runs in this process with a
tiny fake reconstructor unless the prior is the point.
"""

from __future__ import annotations

import functools
import socket
import struct
import threading
import time

import ismrmrd
import numpy as np
import pytest
import torch
from gadget_helpers import MATRIX, acquisitions_of, configuration_xml
from gadgetron.external import constants, writers

from gadget import handlers
from gadget.gadgetron_protocol import BoundedSocket, Limits, default_readers, messages
from gadget.listen import Listener

pytestmark = pytest.mark.timeout(300)
ID = struct.Struct("<H")


def fake_reconstructor(assembled):
    """Deterministic, cheap and linear in the data: mean = coil sum, std = |coil sum|."""
    from diffusion_core.reconstruct import Reconstruction

    mean = assembled.kspace.sum(0)
    return Reconstruction(mean, mean.abs(), mean[None], assembled.kspace, 1.0, 0.0, mean.abs() >= 0)


def setup_bytes(config: bytes, header: bytes) -> bytes:
    return (
        ID.pack(2) + struct.pack("<I", len(config)) + config
        + ID.pack(3) + struct.pack("<I", len(header)) + header
    )  # fmt: skip


def data_bytes(items) -> bytes:
    chunks: list[bytes] = []

    class Sink:
        write = staticmethod(chunks.append)

    for item in items:
        if isinstance(item, bytes):
            chunks.append(item)
        elif isinstance(item, ismrmrd.Waveform):
            writers.write_waveform(Sink, item)
        else:
            writers.write_acquisition(Sink, item)
    return b"".join(chunks)


def replies(sock: socket.socket, deadline_s: float = 20) -> tuple[list[object], list[str], bool]:
    """Read the gadget's messages until CLOSE or EOF: (items, error texts, closed with CLOSE)."""
    from gadgetron.external import readers

    sock.settimeout(deadline_s)
    stream = BoundedSocket(sock)
    items: list[object] = []
    errors: list[str] = []
    while True:
        try:
            mid = ID.unpack(stream.read(2))[0]
        except ConnectionError:
            return items, errors, False
        if mid == constants.GADGET_MESSAGE_CLOSE:
            return items, errors, True
        if mid == constants.GADGET_MESSAGE_ERROR:
            (length,) = struct.unpack("<Q", stream.read(8))
            errors.append(stream.read(length).decode())
        elif mid == constants.GADGET_MESSAGE_ISMRMRD_IMAGE:
            items.append(readers.read_image(stream))
        elif mid == constants.GADGET_MESSAGE_ISMRMRD_WAVEFORM:
            items.append(readers.read_waveform(stream))
        elif mid == constants.GADGET_MESSAGE_ISMRMRD_ACQUISITION:
            items.append(readers.read_acquisition(stream))
        else:
            raise AssertionError(f"the gadget sent message id {mid}, which Gadgetron cannot read")


@pytest.fixture
def listener():
    handler = functools.partial(handlers.handle_acquisitions, reconstructor=fake_reconstructor)
    server = Listener(("127.0.0.1", 0), handler, Limits(setup_timeout_s=2.0, idle_timeout_s=10.0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(timeout=10)


def talk(server: Listener, payload: bytes, half_close: bool = True):
    with socket.create_connection(server.address, timeout=10) as sock:
        try:
            sock.sendall(payload)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the gadget may end the connection before reading everything (bad set-up)
        return replies(sock)


def images(items):
    return [i for i in items if isinstance(i, ismrmrd.Image)]


def test_setup_cut_at_every_byte_ends_with_error_and_the_listener_keeps_serving(
    listener, full_file
) -> None:
    xml, acquisitions = acquisitions_of(full_file)
    setup = setup_bytes(configuration_xml({"image_series_index": "7"}), xml)
    started = time.monotonic()
    for cut in range(len(setup)):
        _, errors, closed = talk(listener, setup[:cut])
        assert closed and len(errors) == 1, cut
        assert "closed by the peer" in errors[0], (cut, errors[0])
    assert time.monotonic() - started < 120
    items, errors, closed = talk(listener, setup + data_bytes(acquisitions) + ID.pack(4))
    assert closed and errors == []
    assert [i.image_series_index for i in images(items)] == [7, 8]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (ID.pack(2) + b"\xff\xff\xff\xff", "CONFIG message: length field 4294967295 bytes"),
        (ID.pack(3) + b"\0\0\0\0", "message id 3 where Gadgetron sends CONFIG (id 2)"),
        (setup_bytes(b"<configuration>", b""), "CONFIG message (15 bytes) is not well-formed XML"),
        (setup_bytes(b"", b"<ismrmrdHeader>"), "HEADER message (15 bytes) is not well-formed XML"),
        (setup_bytes(b"", b"\xff" * 9), "HEADER message (9 bytes) is not well-formed XML"),
        (
            setup_bytes(configuration_xml({"nfe": "many"}), b"x"),
            "HEADER message (1 bytes) is not well-formed XML",
        ),
    ],
    ids=["config-length-2^32-1", "header-first", "bad-config", "bad-header", "binary", "both"],
)
def test_bad_setup_gets_error_then_close_at_once(listener, payload, expected) -> None:
    started = time.monotonic()
    _, errors, closed = talk(listener, payload, half_close=False)  # the peer stays connected
    assert closed and len(errors) == 1 and expected in errors[0], errors
    assert time.monotonic() - started < 1.5  # not the 2 s setup deadline: at once


def test_bad_property_is_an_error_naming_it(listener, full_file) -> None:
    xml, acquisitions = acquisitions_of(full_file)
    payload = setup_bytes(configuration_xml({"nfe": "many"}), xml) + data_bytes(acquisitions[:3])
    items, errors, closed = talk(listener, payload)
    assert closed and items == [] and len(errors) == 1
    assert "property 'nfe': expected an integer, got 'many'" in errors[0]


def test_stalled_setup_ends_at_the_deadline(listener) -> None:
    with socket.create_connection(listener.address, timeout=10) as sock:
        sock.sendall(ID.pack(2) + struct.pack("<I", 100) + b"<conf")  # then silence
        started = time.monotonic()
        _, errors, closed = replies(sock)
    assert closed and "no data for 2.0 s" in errors[0]
    assert 1.5 < time.monotonic() - started < 6


def _two_slices(path):
    xml, acquisitions = acquisitions_of(path)
    noise, lines = acquisitions[0], acquisitions[1:]
    assert noise.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    first = [a for a in lines if a.idx.repetition == 0]
    second = [a for a in lines if a.idx.repetition == 1]
    return xml, noise, first, second


def test_text_empty_bucket_and_waveform_mid_slice_lose_nothing(listener, accelerated_file) -> None:
    xml, noise, first, second = _two_slices(accelerated_file)
    text = b"a TEXT message"
    empty_bucket = ID.pack(1050) + bytes(104) + bytes(16)  # bucket_meta of zeros, 2 empty stats
    waveform = ismrmrd.Waveform.from_array(np.arange(6, dtype=np.uint32).reshape(1, 6))
    middle = len(first) // 2
    stream = [
        noise, *first[:middle],
        ID.pack(5) + struct.pack("<I", len(text)) + text, empty_bucket, waveform,
        *first[middle:], *second, ID.pack(4),
    ]  # fmt: skip
    items, errors, closed = talk(listener, setup_bytes(b"", xml) + data_bytes(stream))
    assert closed and errors == []
    assert [i.repetition for i in images(items) if i.image_series_index == 1] == [0, 1]
    assert isinstance(items[0], ismrmrd.Waveform) and (items[0].data == np.arange(6)).all()
    reference = images(
        talk(listener, setup_bytes(b"", xml) + data_bytes([noise, *first, ID.pack(4)]))[0]
    )
    np.testing.assert_array_equal(images(items)[0].data, reference[0].data)


def test_unknown_message_id_mid_slice_reconstructs_what_was_read(
    listener, accelerated_file
) -> None:
    xml, noise, first, second = _two_slices(accelerated_file)
    middle = len(first) // 2
    stream = [noise, *second, *first[:middle], ID.pack(4242) + b"unframed body", *first[middle:]]
    items, errors, closed = talk(listener, setup_bytes(b"", xml) + data_bytes(stream))
    assert closed and len(errors) == 1
    assert "message id 4242" in errors[0] and "2 slices reconstructed" in errors[0]
    means = [i for i in images(items) if i.image_series_index == 1]
    assert [m.repetition for m in means] == [1, 0]  # the open slice of `middle` lines too
    assert np.abs(means[1].data).max() > 0


def test_bad_noise_scan_is_dropped_and_the_data_reconstructed(accelerated_file, caplog) -> None:
    from gadget.connections import MemoryConnection

    xml, noise, first, _ = _two_slices(accelerated_file)
    bad = ismrmrd.Acquisition.from_array(np.full((4, 64), np.nan, np.complex64))
    bad.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    seen = []

    def reconstructor(assembled):
        seen.append(assembled)
        return fake_reconstructor(assembled)

    header = ismrmrd.xsd.CreateFromDocument(xml)
    sent: list[object] = []
    summary = handlers.handle_acquisitions(
        MemoryConnection(None, header, [bad, *first], sent.append), reconstructor
    )
    assert summary.ok and len(images(sent)) == 2
    assert seen[0].noise_covariance is None and not seen[0].prewhitened
    assert seen[0].noise_note.startswith("not prewhitened: noise scan 0 dropped (256 non-finite")
    assert "noise scan acquisition 0" in caplog.text
    sent.clear()
    handlers.handle_acquisitions(
        MemoryConnection(None, header, [noise, *first], sent.append), reconstructor
    )
    assert seen[1].prewhitened and seen[1].noise_note.startswith("prewhitened: noise covariance")


def test_eight_concurrent_connections_share_one_prior_and_get_their_own_images(
    accelerated_file, monkeypatch
) -> None:
    from gadget import recon

    loads = []

    def load_prior(config, device):
        loads.append(config)
        time.sleep(0.5)  # slow enough that concurrent first requests would race

        def denoise(x: torch.Tensor, sigma) -> torch.Tensor:
            return 0.5 * x

        return denoise

    monkeypatch.setattr(recon, "load_prior", load_prior)
    cache = recon.PriorCache()
    handler = functools.partial(handlers.handle_acquisitions, priors=cache)
    server = Listener(("127.0.0.1", 0), handler, max_connections=8)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    xml, _, first, _ = _two_slices(accelerated_file)
    properties = {"nfe": "2", "num_samples": "1", "cg_iters": "1", "device": "cpu"}
    results: dict[int, list[object]] = {}

    def client(i: int) -> None:
        scaled = []
        for a in first:
            b = ismrmrd.Acquisition.from_array(a.data * (i + 1))
            b.setHead(a.getHead())
            scaled.append(b)
        config = configuration_xml({**properties, "image_series_index": str(10 * i)})
        payload = setup_bytes(config, xml) + data_bytes([*scaled, ID.pack(4)])
        items, errors, closed = talk(server, payload)
        assert closed and errors == []
        results[i] = images(items)

    try:
        clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout=240)
    finally:
        server.shutdown()
    assert len(loads) == 1 and len(cache) == 1
    assert sorted(results) == list(range(8))
    base = results[0][0].data
    for i, got in results.items():
        assert [g.image_series_index for g in got] == [10 * i]  # one sample: no std series
        assert got[0].matrix_size == (MATRIX, MATRIX, 1)
        # no noise scan: the noise estimate scales with the data, so the same seed gives the
        # same image, (i + 1) times brighter
        np.testing.assert_allclose(got[0].data, (i + 1) * base, rtol=2e-3, atol=1e-3 * base.max())


def test_a_connection_beyond_the_limit_gets_busy_error(full_file) -> None:
    handler = functools.partial(handlers.handle_acquisitions, reconstructor=fake_reconstructor)
    server = Listener(("127.0.0.1", 0), handler, Limits(setup_timeout_s=5.0), max_connections=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    xml, acquisitions = acquisitions_of(full_file)
    try:
        with socket.create_connection(server.address, timeout=10) as first:
            first.sendall(setup_bytes(b"", xml))  # set up, then holds its slot
            time.sleep(0.3)
            _, errors, closed = talk(server, setup_bytes(b"", xml))
            assert closed and "listener busy: 1 connections" in errors[0]
            first.sendall(data_bytes([*acquisitions, ID.pack(4)]))
            items, errors, closed = replies(first)
        assert closed and errors == [] and len(images(items)) == 2
    finally:
        server.shutdown()


def test_a_stall_inside_a_message_ends_the_stream_without_waiting_for_the_idle_timeout() -> None:
    """A damaged length field declares bytes Gadgetron never sends while it keeps the socket open:
    the body read gives up after the stall timeout, the wait between messages stays the idle one."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.settimeout(30.0)  # the idle timeout between messages
        stream = BoundedSocket(ours)
        line = ismrmrd.Acquisition.from_array(np.ones((2, 8), np.complex64)).to_bytes()
        theirs.sendall(struct.pack("<H", constants.GADGET_MESSAGE_ISMRMRD_ACQUISITION) + line)
        theirs.sendall(struct.pack("<H", constants.GADGET_MESSAGE_ISMRMRD_ACQUISITION) + line[:100])
        items = messages(stream, default_readers(), stall_timeout_s=0.3)
        assert isinstance(next(items), ismrmrd.Acquisition)
        started = time.monotonic()
        with pytest.raises(
            ConnectionError,
            match=r"message id 1008 \(data message 2\): no data for 0.3 s with \d+ of \d+ "
            r"bytes unread .*expected the rest of the message",
        ):
            next(items)
        assert time.monotonic() - started < 2.0
        assert ours.gettimeout() == 30.0
