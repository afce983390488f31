"""Fuzz cases for the two socket protocols: a valid client stream, then one mutation of it.

``protocol`` is ``"mrd"`` (``serve``) or ``"gadgetron"`` (``python -m gadget.listen`` and
``python -m gadgetron PORT gadget.handlers handle_acquisitions``).
"""

from __future__ import annotations

import random
from dataclasses import replace

import ismrmrd

from fuzzkit import datasets, wire
from fuzzkit.datasets import BaseFile
from fuzzkit.wire import Frame, Wire

UNKNOWN_IDS = [0, 9, 999, 1000, 1009, 1025, 2000, 4097, 65535]


def configuration(properties: dict[str, str]) -> bytes:
    body = "".join(f'<property name="{k}" value="{v}"/>' for k, v in properties.items())
    return f"<configuration>{body}</configuration>".encode()


def _items(acquisitions: list[ismrmrd.Acquisition], rng: random.Random) -> list[object]:
    """The acquisitions with a waveform and an image of another source among them."""
    items: list[object] = list(acquisitions)
    items.insert(rng.randrange(len(items) + 1), wire.waveform())
    items.insert(rng.randrange(len(items) + 1), wire.image())
    return items


def _frames(
    protocol: str,
    properties: dict[str, str],
    header: bytes,
    items: list[object],
    rng: random.Random,
    style: str | None = None,
) -> tuple[list[Frame], str]:
    if protocol == "mrd":
        style = style or rng.choice(["text", "name"])
        config: bytes | str = "default.xml" if style == "name" else configuration(properties)
        setup = wire.mrd_setup(config, header, nul=style == "c++ nul")
    else:
        style = "gadgetron"
        setup = wire.gadgetron_setup(configuration(properties), header)
    return [*setup, *(wire.item_frame(i) for i in items), wire.close_frame()], style


def stream_case(
    protocol: str, family: str, base: BaseFile, properties: dict[str, str], seed: int
) -> Wire:
    """One case of ``family`` for ``protocol`` (seeded); its name is the reproducer."""
    rng = random.Random(seed)
    header, acquisitions = base.xml, list(base.acquisitions)
    what = ""
    if family == "acq-mutation":
        sub = rng.choice(list(datasets.ACQ_FAMILIES))
        header, acquisitions, what = datasets.ACQ_FAMILIES[sub](base, rng)
        what = f"{sub} {what}"
    elif family == "header-mutation":
        sub = rng.choice(list(datasets.HEADER_FAMILIES))
        header, acquisitions, what = datasets.HEADER_FAMILIES[sub](base, rng)
        what = f"{sub} {what}"
    style = "c++ nul" if family == "cpp-client" else None
    frames, style = _frames(protocol, properties, header, _items(acquisitions, rng), rng, style)
    setup = len(frames[0].data) + len(frames[1].data)
    total = sum(len(f.data) for f in frames)
    at = rng.randrange(2, len(frames) - 1)  # an item boundary
    name = f"{family}: {base.name}, {style}"
    if family == "cpp-client":  # gadgetron_ismrmrd_client counts and sends a terminating NUL
        result = wire.assemble(f"{name}: CONFIG_TEXT and HEADER NUL-terminated", frames)
    elif family == "valid":
        if protocol == "mrd" and rng.random() < 0.5:
            frames.insert(at, wire.text_frame("client log line"))
            what = f"TEXT before frame {at}"
        result = wire.assemble(f"{name} {what}", frames)
    elif family in ("acq-mutation", "header-mutation"):
        result = wire.assemble(f"{name} {what}", frames, setup_intact=family == "acq-mutation")
    elif family == "cut-setup":
        cut, ending = rng.randrange(0, setup), rng.choice(["half-close", "close"])
        result = wire.cut(
            f"{name} cut after byte {cut} of {setup} (setup), {ending}", frames, cut, ending
        )
    elif family == "cut-data":
        cut, ending = rng.randrange(setup, total - 2), rng.choice(["half-close", "close"])
        result = wire.cut(f"{name} cut after byte {cut} of {total}, {ending}", frames, cut, ending)
    elif family == "huge-length":
        which = rng.choice(
            [0, 1, "text"] if style in ("text", "c++ nul", "gadgetron") else [1, "text"]
        )
        if which == "text":
            frames.insert(at, wire.text_frame("x" * 16))
            which = at
        result = wire.huge_length(
            f"{name} length 2^32-1 in frame {which} ({frames[which].kind})", frames, int(which)
        )
    elif family == "unknown-id":
        mid = rng.choice(UNKNOWN_IDS)
        payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 4, 64])))
        extra = Frame("unknown", wire._u16(mid) + payload)
        result = wire.insert(
            f"{name} message id {mid} (+{len(payload)} bytes) before frame {at}",
            frames,
            at,
            extra,
            breaks=True,
        )
    elif family == "text-mid":
        extra = wire.text_frame("status: " + "y" * rng.randrange(0, 200))
        # Gadgetron's side has no TEXT message: there only what came before it counts
        breaks = protocol != "mrd"
        result = wire.insert(f"{name} TEXT before frame {at}", frames, at, extra, breaks=breaks)
    elif family == "empty-bucket":
        result = wire.insert(
            f"{name} empty AcquisitionBucket before frame {at}",
            frames,
            at,
            wire.empty_bucket_frame(),
            breaks=False,
        )
    elif family == "overwrite":
        count = rng.choice([1, 2, 8])
        start = rng.choice([0, setup])
        result = wire.overwrite(
            f"{name} {count} random bytes overwritten from byte {start}", frames, rng, count, start
        )
    else:
        raise ValueError(f"unknown stream family {family!r}")
    return replace(result, name=f"{result.name} (seed {seed})")


MRD_FAMILIES = ["valid", "cpp-client", "acq-mutation", "header-mutation", "cut-setup", "cut-data", "huge-length",
                "unknown-id", "text-mid", "overwrite"]  # fmt: skip
GADGETRON_FAMILIES = [f for f in MRD_FAMILIES if f != "cpp-client"] + ["empty-bucket"]
