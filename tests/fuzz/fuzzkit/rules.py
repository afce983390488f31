"""What each fuzz case is judged on, and the table of a run.

* **hang**: the entry point did not end within the case's bound (time), or a process / session
  was still alive after its peer had gone, or a listener did not serve the next connection.
* **crash**: an exit code other than the documented ones (replay 0/1/2, execute mode 0/1), a
  process that died (listeners must survive), an exception escaping the replay API that is not
  ReplayError / ValueError / OSError, or a session that ended without CLOSE to a client still
  reading.
* **lost**: an item the entry point accepted (a non-noise acquisition, waveform or image whose
  message lies wholly before the first damaged byte, with the configuration and header intact)
  that neither came back unchanged (same header and data bytes) nor shares its counters
  (slice, contrast, phase, repetition, set, average) with an image that came back.
* **unclear**: an error message that fails :func:`is_clear`, a traceback in the output for bad
  input, or a failed / refused run that gave no error at all.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import ismrmrd
import numpy as np

# The message names the item ...
ITEM = re.compile(
    r"acquisitions? \d+|line \d+|scan(?:_counter)? \d+|message(?: id)?:? \d+|\bid:? \d+"
    r"|property '\w+'|/\w+/\w+|\.h5|matrix ?size|receiverChannels|channels|number_of_samples"
    r"|samples|noise scan|ISMRMRD header|header|configuration|CONFIG\w*|slice \(|encoding"
    r"|kspace_encode_step_\d|trajectory|dwell|sample_time_us",
    re.IGNORECASE,
)
# ... and what was expected (or that the stream ended, and where).
EXPECTED = re.compile(
    r"expected|must |should |at most|at least|exceeds|out of range|not (?:a|an|valid|well-formed"
    r"|allowed|supported|one of)|missing|unknown|closed|ended|truncated|incomplete|unread"
    r"|before the|outside|has no|\bno <|no such|larger than|smaller than|too (?:large|many|big|small)"
    # a statement of the required form: "not UTF-8 text", "cannot be read as HDF5",
    # "this gadget reconstructs Cartesian data only"
    r"|not UTF-8|cannot be read as|\w+ data only\b",
    re.IGNORECASE,
)
# Raw Python / library text that tells a user nothing about their data.
RAW = re.compile(
    r"Traceback \(most recent|invalid literal|has no attribute|index out of range|NoneType"
    r"|unpack requires|not subscriptable|MKL|unsupported operand|referenced before|struct\.error"
    r"|\b(?:KeyError|IndexError|TypeError|AttributeError|ZeroDivisionError|OverflowError"
    r"|MemoryError|RuntimeError|AssertionError|UnboundLocalError|RecursionError)\b"
)


def is_clear(message: str) -> bool:
    """Names the item and what was expected, in words rather than a raw Python error."""
    return not RAW.search(message) and bool(ITEM.search(message)) and bool(EXPECTED.search(message))


def unclear_messages(messages: Iterable[str]) -> list[str]:
    return [m for m in messages if not is_clear(m)]


def item_key(item: object) -> bytes:
    """Header and payload bytes of an acquisition, waveform, image or array."""
    if isinstance(item, ismrmrd.Acquisition):
        return b"A" + bytes(item.getHead()) + item.traj.tobytes() + item.data.tobytes()
    if isinstance(item, ismrmrd.Waveform):
        return b"W" + bytes(item.getHead()) + item.data.tobytes()
    if isinstance(item, ismrmrd.Image):
        return b"I" + bytes(item.getHead()) + np.ascontiguousarray(item.data).tobytes()
    if isinstance(item, np.ndarray):
        return b"N" + str(item.dtype).encode() + str(item.shape).encode() + item.tobytes()
    return b"?" + repr(item).encode()


def counters(item: object) -> tuple[int, ...]:
    """(slice, contrast, phase, repetition, set, average) of an acquisition or image."""
    if isinstance(item, ismrmrd.Acquisition):
        i = item.idx
        return (i.slice, i.contrast, i.phase, i.repetition, i.set, i.average)
    assert isinstance(item, ismrmrd.Image)
    return (item.slice, item.contrast, item.phase, item.repetition, item.set, item.average)


def count_lost(expected: Iterable[object], returned: Iterable[object]) -> int:
    """Expected items that neither came back unchanged nor contributed to an image."""
    returned = list(returned)
    back = Counter(item_key(r) for r in returned)
    sent = {item_key(e) for e in expected if isinstance(e, ismrmrd.Image)}
    imaged = {
        counters(r) for r in returned if isinstance(r, ismrmrd.Image) and item_key(r) not in sent
    }
    lost = 0
    for item in expected:
        key = item_key(item)
        if back[key]:
            back[key] -= 1
        elif not (isinstance(item, ismrmrd.Acquisition) and counters(item) in imaged):
            lost += 1
    return lost


@dataclass
class Outcome:
    """The verdict on one case."""

    category: str
    case: str
    seconds: float = 0.0
    hang: bool = False
    crash: bool = False
    lost: int = 0
    unclear: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def family(self) -> str:
        return self.case.split(":", 1)[0]

    def failures(self) -> list[str]:
        found = []
        if self.hang:
            found.append("hang")
        if self.crash:
            found.append("crash")
        if self.lost:
            found.append(f"lost {self.lost}")
        found += [f"unclear: {m[:300]}" for m in self.unclear]
        return found

    def describe(self) -> str:
        verdict = "; ".join(self.failures()) or "ok"
        notes = f" [{'; '.join(self.notes)[:600]}]" if self.notes else ""
        return f"{self.category} {self.case} ({self.seconds:.1f} s): {verdict}{notes}"


def table(outcomes: list[Outcome], by: str = "category") -> str:
    """A Markdown table: cases, hangs, crashes, lost (cases / items), unclear, peak RSS."""
    rows: dict[str, list[Outcome]] = {}
    for o in outcomes:
        rows.setdefault(
            o.category if by == "category" else f"{o.category} / {o.family}", []
        ).append(o)
    lines = [
        f"| {by} | cases | hangs | crashes | lost (cases / items) | unclear | peak RSS MB | max s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, group: list[Outcome]) -> str:
        return (
            f"| {name} | {len(group)} | {sum(o.hang for o in group)} | "
            f"{sum(o.crash for o in group)} | {sum(bool(o.lost) for o in group)} / "
            f"{sum(o.lost for o in group)} | {sum(bool(o.unclear) for o in group)} | "
            f"{max((o.peak_rss_mb for o in group), default=0):.0f} | "
            f"{max((o.seconds for o in group), default=0):.1f} |"
        )

    lines += [row(name, group) for name, group in sorted(rows.items())]
    lines.append(row("**all**", outcomes))
    return "\n".join(lines)
