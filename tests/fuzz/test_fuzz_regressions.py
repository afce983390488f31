"""Cases that a long fuzz run (``benchmarks/fuzz.py``) found failing, kept as reproducers.

Each is ``(category, family, seed)`` exactly as the run's report names it, with what went wrong
before the fix; every one must now end within its bound, without a crash, losing nothing and
saying clearly what was wrong (the property of ``fuzz_property.check_family``).
"""

from __future__ import annotations

import pytest
from fuzzkit.campaign import Campaign

pytestmark = pytest.mark.timeout(170)

FOUND = [
    # seed 11 run (benchmarks/results/fuzz_session19.md)
    pytest.param(
        "serve", "overwrite", 228688,
        id="serve-image-attribute-length-beyond-the-stream",
    ),  # a damaged uint64 attribute length asked for 9 MB more than was sent; the server waited
    # with the client for the 60 s message deadline (now: the 5 s stall timeout inside a message)
    pytest.param(
        "file-api", "file-bytes", 227909, id="damaged-data-object-header"
    ),  # h5py's KeyError ("bad version number for datatype message") escaped as a crash
    pytest.param("file-api", "file-bytes", 56011, id="damaged-data-object-header-2"),
    pytest.param(
        "file-api", "file-bytes", 981517, id="unreadable-acquisition-headers"
    ),  # the message said what failed but not what was expected
    # session 29 run (benchmarks/results/fuzz_session29.md)
    pytest.param(
        "gadgetron-listen", "cut-data", 722363, id="stream-cut-inside-a-message-id"
    ),  # cut after 1 byte of an id: "the stream ended after 10 data messages without CLOSE"
    # named no message (now: "where the id of message 11 or CLOSE was expected")
    # seed 5 run (benchmarks/results/fuzz_session29_seed5.md)
    pytest.param(
        "file-api", "file-bytes", 42273, id="damaged-root-group-links"
    ),  # h5py's RuntimeError ("Link iteration failed (actual len exceeds EOA)") listing the
    # top-level group escaped as a crash
    pytest.param("file-api", "file-bytes", 161299, id="damaged-root-group-b-tree"),
    # seed 9 run (benchmarks/results/fuzz_session29_seed9.md)
    pytest.param(
        "file-api", "file-bytes", 268852, id="damaged-compound-member-name"
    ),  # h5py's UnicodeDecodeError reading the data's datatype: "'utf-8' codec can't decode
    # byte 0xef" named neither the dataset nor what was expected
]  # fmt: skip


@pytest.mark.parametrize(("category", "family", "seed"), FOUND)
def test_found_case_now_passes(campaign: Campaign, category: str, family: str, seed: int) -> None:
    outcome = campaign.run(category, family, seed)
    assert not outcome.failures(), outcome.describe()
