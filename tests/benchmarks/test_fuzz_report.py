"""The long fuzz run's results file stays text whatever bytes a fuzzed message carried."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.fuzz import printable  # noqa: E402


def test_control_characters_are_written_as_escapes_and_text_is_kept():
    assert printable("CONFIG\x00 cut\x1b[2K\n\tok é") == "CONFIG\\x00 cut\\x1b[2K\n\tok é"
    assert printable("plain line\n") == "plain line\n"
