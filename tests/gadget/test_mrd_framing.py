"""The MRD framing layer on a socket pair: both text forms, caps before allocation, EOF at any
byte, deadlines, and random byte streams that must end in one of its errors, quickly."""

from __future__ import annotations

import socket
import struct
import threading
import time

import ismrmrd
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gadget.mrd_framing import (
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
    config_file_frame,
    object_frame,
    text_frame,
)

pytestmark = pytest.mark.timeout(60)
LIMITS = FrameLimits(idle_timeout_s=2.0, message_timeout_s=2.0)


_OPEN: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets():
    yield
    while _OPEN:
        _OPEN.pop().close()


def _reader_of(data: bytes, limits: FrameLimits = LIMITS, close: bool = True):
    ours, theirs = socket.socketpair()
    _OPEN.extend((ours, theirs))
    theirs.sendall(data)
    if close:
        theirs.close()
    return FrameReader(ours, limits), ours, theirs


def _bare(mid: int, text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<HI", mid, len(raw)) + raw


def test_nul_terminated_and_bare_texts_read_alike() -> None:
    for frame in (text_frame, _bare):
        data = frame(2, "<configuration/>") + frame(3, "<ismrmrdHeader/>") + frame(5, "héllo")
        reader, *_ = _reader_of(config_file_frame("default.xml") + data + struct.pack("<H", 4))
        assert [reader.read_message() for _ in range(5)] == [
            ConfigFileMessage("default.xml"),
            ConfigTextMessage("<configuration/>"),
            HeaderMessage("<ismrmrdHeader/>"),
            TextMessage("héllo"),
            CloseMessage(),
        ]
        with pytest.raises(StreamEnded):
            reader.read_message()


def test_acquisitions_images_and_waveforms_round_trip() -> None:
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((3, 16)) + 1j * rng.standard_normal((3, 16))).astype(np.complex64)
    acquisition = ismrmrd.Acquisition.from_array(data, scan_counter=7)
    image = ismrmrd.Image.from_array(
        rng.standard_normal((4, 5)).astype(np.float32), transpose=False
    )
    image.meta = {"DataRole": "Image"}
    waveform = ismrmrd.Waveform.from_array(np.arange(10, dtype=np.uint32).reshape(2, 5))
    stream = b"".join(object_frame(x) for x in (acquisition, image, waveform))
    reader, *_ = _reader_of(stream)
    got = [reader.read_message() for _ in range(3)]
    np.testing.assert_array_equal(got[0].data, data)
    assert got[0].scan_counter == 7
    np.testing.assert_array_equal(got[1].data, image.data)
    assert got[1].meta["DataRole"] == "Image"
    np.testing.assert_array_equal(got[2].data, waveform.data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            struct.pack("<HI", 3, 2**32 - 1),
            "text length is 4294967295; this server accepts at most",
        ),
        (struct.pack("<H", 1030), "unknown message id 1030; expected one of"),
        (
            struct.pack("<H", 1008) + bytes(ismrmrd.AcquisitionHeader(number_of_samples=60000)),
            "number_of_samples is 60000",
        ),
        (
            struct.pack("<H", 1008)
            + bytes(ismrmrd.AcquisitionHeader(number_of_samples=8, active_channels=65535)),
            "active_channels is 65535",
        ),
        (
            struct.pack("<H", 1022) + bytes(ismrmrd.ImageHeader(data_type=9)),
            "image data_type 9; expected 1..8",
        ),
        (
            struct.pack("<H", 1026)
            + bytes(ismrmrd.WaveformHeader(number_of_samples=9, channels=999)),
            "channels is 999",
        ),
        (struct.pack("<HI", 5, 2) + b"\xff\xfe", "not UTF-8 text"),
    ],
    ids=["text-length", "unknown-id", "samples", "channels", "image-type", "waveform", "utf8"],
)
def test_bad_fields_are_refused_before_reading_on(data: bytes, expected: str) -> None:
    reader, *_ = _reader_of(data, close=False)  # no more bytes follow: a read would time out
    started = time.monotonic()
    with pytest.raises(FramingError, match=expected.replace("(", r"\(")) as error:
        reader.read_message()
    assert time.monotonic() - started < 0.5
    assert "message 1 (id" in str(error.value)


def test_eof_at_every_byte_of_a_message_is_a_cut() -> None:
    frame = object_frame(ismrmrd.Acquisition.from_array(np.ones((2, 8), np.complex64)))
    for cut in range(1, len(frame)):
        reader, *_ = _reader_of(frame[:cut])
        with pytest.raises(StreamCut, match="missing"):
            reader.read_message()


def test_idle_timeout_and_message_deadline() -> None:
    limits = FrameLimits(idle_timeout_s=0.3, message_timeout_s=0.6)
    reader, _, theirs = _reader_of(b"", limits, close=False)
    started = time.monotonic()
    with pytest.raises(ReadTimeout, match=r"no message for 0.3 s \(idle timeout\)"):
        reader.read_message()
    assert time.monotonic() - started < 1.0
    stop = threading.Event()

    def trickle() -> None:  # one byte of a long text every 0.1 s: never idle, never done
        theirs.sendall(struct.pack("<HI", 5, 1000))
        while not stop.wait(0.1):
            try:
                theirs.sendall(b"x")
            except OSError:
                return

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    started = time.monotonic()
    with pytest.raises(ReadTimeout, match=r"not complete within 0.6 s"):
        reader.read_message()
    assert time.monotonic() - started < 1.2
    stop.set()
    sender.join(5)


def test_a_stall_inside_a_message_ends_it_long_before_the_message_deadline() -> None:
    """A damaged length declares more bytes than the client sends, and the client waits for the
    reply with its socket open: the reader must not wait for the message deadline."""
    limits = FrameLimits(idle_timeout_s=30.0, message_timeout_s=30.0, stall_timeout_s=0.3)
    declared = struct.pack("<HI", 5, 1000) + b"x" * 10  # TEXT of 1000 bytes, 10 sent
    reader, _, theirs = _reader_of(declared, limits, close=False)
    started = time.monotonic()
    with pytest.raises(
        ReadTimeout,
        match=r"message 1 \(id 5 TEXT, byte 0\): no byte for 0.3 s with 10 of 1000 bytes read; "
        r"expected the rest of the message",
    ):
        reader.read_message()
    assert time.monotonic() - started < 2.0
    # between messages the idle timeout applies, not the stall timeout
    reader, _, theirs = _reader_of(_bare(5, "ok"), limits, close=False)
    assert reader.read_message() == TextMessage("ok")
    theirs.settimeout(0.01)
    threading.Timer(0.6, lambda: theirs.sendall(_bare(5, "later"))).start()
    assert reader.read_message() == TextMessage("later")  # 0.6 s idle > 0.3 s stall: fine


def test_config_file_names_fill_1024_bytes() -> None:
    assert len(config_file_frame("default")) == 1026
    with pytest.raises(ValueError, match="at most 1023"):
        config_file_frame("x" * 1024)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.integers(0, 5))
def test_random_bytes_end_in_a_named_error_quickly(tail: bytes, prefix: int) -> None:
    """After a valid start (some of: config, header, an acquisition), arbitrary bytes: every
    message read is one of the known kinds, and the stream ends with one of the reader's own
    errors within the deadline -- never a hang, never another exception."""
    acquisition = object_frame(ismrmrd.Acquisition.from_array(np.ones((1, 4), np.complex64)))
    start = [config_file_frame("default"), text_frame(3, "<x/>"), acquisition] * 2
    limits = FrameLimits(idle_timeout_s=0.2, message_timeout_s=0.2, max_text_bytes=4096)
    reader, *_ = _reader_of(b"".join(start[:prefix]) + tail, limits)
    started = time.monotonic()
    with pytest.raises((StreamEnded, StreamCut, FramingError, ReadTimeout)):
        for _ in range(1000):
            reader.read_message()
    assert time.monotonic() - started < 1.0
    while _OPEN:  # hypothesis runs many examples in one test call
        _OPEN.pop().close()
