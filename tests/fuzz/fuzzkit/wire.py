"""Byte streams framed exactly as the real clients frame them, and ways to break them.

* MRD (``gadgetron_ismrmrd_client``, FIRE): message id uint16 LE; CONFIG_FILE (1) + a 1024-byte
  NUL-padded name; CONFIG_TEXT (2), HEADER (3) and TEXT (5) + uint32 length + bytes (the C++
  client counts and sends a terminating NUL); ACQUISITION (1008), IMAGE (1022), WAVEFORM (1026)
  as ismrmrd serialises them; CLOSE (4).
* Gadgetron's side of the external-language interface: CONFIG (2) and HEADER (3) + uint32 length
  + bytes, then the same ACQUISITION / WAVEFORM / IMAGE messages, CLOSE (4).

A :class:`Wire` is the bytes of one case plus what must come back from them: the items (not noise
scans) of the messages that lie wholly before the first damaged byte, provided the configuration
and header are untouched.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, replace

import ismrmrd
import numpy as np

CONFIG_FILE, CONFIG_TEXT, HEADER, CLOSE, TEXT = 1, 2, 3, 4, 5
ERROR = 8  # Gadgetron's side only: uint64 length + UTF-8 text, sent before CLOSE
ACQUISITION, IMAGE, WAVEFORM, BUCKET = 1008, 1022, 1026, 1050
KNOWN_IDS = {1, 2, 3, 4, 5, 6, 7, 8, 1008, 1022, 1023, 1024, 1026, 1030, 1050}


@dataclass(frozen=True)
class Frame:
    """One message: its bytes (id included) and the item it carries (None for set-up / control)."""

    kind: str
    data: bytes
    item: object | None = None


@dataclass(frozen=True)
class Wire:
    """The bytes a client sends in one case.

    Attributes:
        name: what was done to the stream (for the table and the reproducer).
        data: the bytes, in order.
        expected: items that must come back unchanged or contribute to an image.
        setup_intact: configuration and header are the valid ones (else only hang / crash /
            clarity are judged).
        ending: ``half-close`` (shut down writing, read the reply to its end) or ``close``
            (close the socket at once: nobody is left to answer).
        sends_close: the client's CLOSE is among the bytes (a cut stream has none).
    """

    name: str
    data: bytes
    expected: tuple[object, ...]
    setup_intact: bool = True
    ending: str = "half-close"
    sends_close: bool = True


def _u16(value: int) -> bytes:
    return struct.pack("<H", value)


def _string(mid: int, payload: bytes, nul: bool) -> bytes:
    payload = payload + b"\x00" if nul else payload
    return _u16(mid) + struct.pack("<I", len(payload)) + payload


def item_frame(item: object) -> Frame:
    """An ACQUISITION, IMAGE or WAVEFORM message (identical on both protocols)."""
    chunks: list[bytes] = []
    if isinstance(item, ismrmrd.Acquisition):
        kind, mid = "acquisition", ACQUISITION
    elif isinstance(item, ismrmrd.Image):
        kind, mid = "image", IMAGE
    elif isinstance(item, ismrmrd.Waveform):
        kind, mid = "waveform", WAVEFORM
    else:
        raise TypeError(f"cannot frame {type(item).__name__}")
    item.serialize_into(chunks.append)
    return Frame(kind, _u16(mid) + b"".join(chunks), item)


def text_frame(text: str) -> Frame:
    return Frame("text", _string(TEXT, text.encode(), nul=False))


def close_frame() -> Frame:
    return Frame("close", _u16(CLOSE))


def mrd_setup(config: bytes | str, header: bytes, nul: bool) -> tuple[Frame, Frame]:
    """CONFIG_FILE (a ``str`` name) or CONFIG_TEXT (``bytes``) and the HEADER of an MRD client."""
    if isinstance(config, str):
        name = config.encode()
        first = Frame("config", _u16(CONFIG_FILE) + name + b"\x00" * (1024 - len(name)))
    else:
        first = Frame("config", _string(CONFIG_TEXT, config, nul))
    return first, Frame("header", _string(HEADER, header, nul))


def gadgetron_setup(config: bytes, header: bytes) -> tuple[Frame, Frame]:
    """CONFIG and HEADER as Gadgetron's external channel sends them to a Python gadget."""
    return Frame("config", _string(CONFIG_TEXT, config, False)), Frame(
        "header", _string(HEADER, header, False)
    )


def empty_bucket_frame() -> Frame:
    """An AcquisitionBucket with nothing in it (gadgetron-python reads it; nothing can write it)."""
    import ctypes

    from gadgetron.types.acquisition_bucket import bucket_meta

    return Frame("bucket", _u16(BUCKET) + bytes(ctypes.sizeof(bucket_meta)) + bytes(16))


def is_noise(item: object) -> bool:
    return isinstance(item, ismrmrd.Acquisition) and item.is_flag_set(
        ismrmrd.ACQ_IS_NOISE_MEASUREMENT
    )


def assemble(
    name: str,
    frames: list[Frame],
    *,
    intact_upto: int | None = None,
    setup_intact: bool = True,
    ending: str = "half-close",
) -> Wire:
    """A Wire of ``frames``; items count as expected when their frame ends at or before byte
    ``intact_upto`` (None: every frame is intact)."""
    data = b"".join(f.data for f in frames)
    limit = len(data) if intact_upto is None else intact_upto
    expected, offset = [], 0
    for frame in frames:
        offset += len(frame.data)
        if offset > limit:
            break
        if frame.item is not None and not is_noise(frame.item):
            expected.append(frame.item)
    return Wire(name, data, tuple(expected) if setup_intact else (), setup_intact, ending)


# ---- mutations of a valid stream (setup frames first, items, CLOSE last) -------------------


def cut(name: str, frames: list[Frame], at: int, ending: str) -> Wire:
    """The stream up to byte ``at`` only, then half-close or close."""
    whole = assemble(name, frames, intact_upto=at, ending=ending)
    setup = len(frames[0].data) + len(frames[1].data)
    return replace(
        whole,
        data=whole.data[:at],
        sends_close=False,
        setup_intact=at >= setup,
        expected=whole.expected if at >= setup else (),
    )


def huge_length(name: str, frames: list[Frame], which: int) -> Wire:
    """The length field of frame ``which`` (a CONFIG_TEXT, HEADER or TEXT) set to 2^32 - 1."""
    frame = frames[which]
    broken = replace(frame, data=frame.data[:2] + struct.pack("<I", 0xFFFFFFFF) + frame.data[6:])
    rest = [*frames[:which], broken, *frames[which + 1 :]]
    wire = assemble(name, rest, intact_upto=sum(len(f.data) for f in frames[:which]))
    return replace(wire, setup_intact=which >= 2, expected=wire.expected if which >= 2 else ())


def insert(name: str, frames: list[Frame], at: int, extra: Frame, *, breaks: bool) -> Wire:
    """``extra`` inserted before frame ``at``; if it ``breaks`` the stream (an unknown id), only
    the items before it are expected back."""
    rest = [*frames[:at], extra, *frames[at:]]
    upto = sum(len(f.data) for f in frames[:at]) if breaks else None
    return assemble(name, rest, intact_upto=upto)


def overwrite(
    name: str, frames: list[Frame], rng: random.Random, count: int, start: int = 0
) -> Wire:
    """``count`` random bytes at random positions at or after byte ``start`` overwritten."""
    data = bytearray(b"".join(f.data for f in frames))
    positions = sorted(rng.randrange(start, len(data)) for _ in range(count))
    for p in positions:
        data[p] = rng.randrange(256)
    wire = assemble(name, frames, intact_upto=positions[0])
    setup = len(frames[0].data) + len(frames[1].data)
    intact = positions[0] >= setup
    return replace(
        wire, data=bytes(data), setup_intact=intact, expected=wire.expected if intact else ()
    )


def waveform(channels: int = 1, samples: int = 8) -> ismrmrd.Waveform:
    data = np.arange(channels * samples, dtype=np.uint32).reshape(channels, samples)
    return ismrmrd.Waveform.from_array(data)


def image(value: float = 1.0) -> ismrmrd.Image:
    picture = ismrmrd.Image.from_array(np.full((8, 8), value, dtype=np.float32))
    picture.image_series_index = 99
    picture.slice = 77  # counters no acquisition of the base files has
    return picture
