"""The verdict rules of the fuzz harness on hand-made examples (so a verdict can be trusted)."""

from __future__ import annotations

import ismrmrd
import numpy as np
from fuzzkit import wire
from fuzzkit.rules import count_lost, is_clear


def _line(step: int, repetition: int = 0) -> ismrmrd.Acquisition:
    acq = ismrmrd.Acquisition.from_array(np.full((2, 8), step, dtype=np.complex64))
    acq.idx.kspace_encode_step_1 = step
    acq.idx.repetition = repetition
    return acq


def test_clear_messages_name_the_item_and_what_was_expected() -> None:
    assert is_clear(
        "ISMRMRD header: encoding[0].reconSpace.matrixSize (32, 0, 1): expected positive sizes"
    )
    assert is_clear("acquisition 12 (scan 3): 65535 samples, expected at most 4096")
    assert is_clear("stream closed before the ISMRMRD header")
    assert not is_clear("invalid literal for int() with base 10: '1.5'")  # names nothing
    assert not is_clear("stream ended early after 0 images")  # which item?
    assert not is_clear("acquisition 3: TypeError: 'NoneType' object is not subscriptable")
    assert not is_clear("Received message (id: 7) with no registered readers.")  # expected what?


def test_lost_counts_lines_neither_returned_nor_imaged() -> None:
    lines = [_line(0), _line(1), _line(2, repetition=1)]
    picture = ismrmrd.Image.from_array(np.ones((4, 4), dtype=np.float32))  # repetition 0
    assert count_lost(lines, [picture]) == 1  # repetition 1 has no image
    assert count_lost(lines, [picture, _line(2, repetition=1)]) == 0  # ... but came back
    assert count_lost(lines, [_line(1)]) == 2
    changed = _line(1)
    changed.data[0, 0] = 5
    assert count_lost(lines[1:2], [changed]) == 1  # back, but not unchanged


def test_an_image_sent_by_the_client_is_not_an_image_of_its_lines() -> None:
    sent = wire.image()
    line = _line(0)
    line.idx.slice = sent.slice
    assert count_lost([line, sent], [sent]) == 1


def test_expected_items_stop_at_the_first_damaged_byte() -> None:
    frames = [
        *wire.gadgetron_setup(b"<configuration/>", b"<x/>"),
        *(wire.item_frame(_line(i)) for i in range(3)),
        wire.close_frame(),
    ]
    setup = len(frames[0].data) + len(frames[1].data)
    one = len(frames[2].data)
    cut = wire.cut("c", frames, setup + one + 5, "half-close")
    assert len(cut.expected) == 1 and cut.setup_intact and len(cut.data) == setup + one + 5
    early = wire.cut("c", frames, setup - 1, "close")
    assert early.expected == () and not early.setup_intact
    unknown = wire.insert("u", frames, 3, wire.Frame("unknown", b"\x07\x00"), breaks=True)
    assert [int(a.idx.kspace_encode_step_1) for a in unknown.expected] == [0]
