"""Mutation families that fail on main at the time of writing (issue 16), in one place.

Each entry: (category, family) -> what goes wrong. The fuzz tests mark these
``xfail(strict=False)``; delete an entry once the product handles the family, and the test
becomes a plain, strict one. /work/wt/FUZZ_FINDINGS.md has a reproducer per entry.
"""

from __future__ import annotations

import pytest

_GT_SETUP = "Gadgetron side: config/header read by gadgetron-python's own socket wrapper, which loops on EOF"
_GT_STOP = (
    "Gadgetron side: an unreadable message ends the stream; the open slice's lines are dropped"
)
_NOT_KEPT = "replay does not write the raw lines of failed slices to the output"
_MRD_STOP = "serve: a stream error ends the session; the open slice's lines are dropped"

KNOWN_FAILURES: dict[tuple[str, str], str] = {
    # replay (issue 16: lost data, crashes, unclear errors)
    ("file-api", "acq-counters"): _NOT_KEPT,
    ("file-api", "acq-order"): _NOT_KEPT,
    ("file-api", "acq-samples"): "a NaN/Inf noise scan fails every slice; " + _NOT_KEPT,
    ("file-api", "acq-shape"): _NOT_KEPT,
    ("file-api", "header-limits"): "non-integer limits: 'invalid literal for int()'; " + _NOT_KEPT,
    ("file-api", "header-malformed"): "some malformed headers run past the bound",
    (
        "file-api",
        "header-matrix",
    ): "huge matrices allocate before any check; '1.5' gives 'invalid literal for int()'",
    ("file-api", "header-missing"): _NOT_KEPT,
    ("file-api", "truncated-data"): _NOT_KEPT,
    (
        "file-api",
        "xml-dataset",
    ): "/dataset/xml with 0 entries (IndexError) or a group (TypeError) escapes replay()",
    ("file-api", "file-bytes"): "some corrupted files give raw HDF5 / Python errors",
    ("file-cli", "acq-samples"): "a NaN/Inf noise scan fails every slice; " + _NOT_KEPT,
    # serve (MRD)
    ("serve", "cpp-client"): "NUL-terminated CONFIG_TEXT/HEADER (gadgetron_ismrmrd_client) refused",
    (
        "serve",
        "acq-mutation",
    ): "a NaN noise scan ends the session; handled slice failures log tracebacks",
    ("serve", "cut-data"): "'stream ended early after N images' names nothing; " + _MRD_STOP,
    (
        "serve",
        "header-mutation",
    ): "header errors without item/expectation; missing <encoding> kills the session",
    ("serve", "huge-length"): _MRD_STOP,
    ("serve", "overwrite"): "corrupted samples give 'MKL FFT error' / raw decode errors",
    ("serve", "unknown-id"): _MRD_STOP,
    # Gadgetron side
    ("gadgetron-listen", "acq-mutation"): "handled slice failures log tracebacks",
    ("gadgetron-listen", "cut-data"): "'stream ended early after N images' names nothing",
    ("gadgetron-listen", "cut-setup"): _GT_SETUP,
    ("gadgetron-listen", "empty-bucket"): _GT_STOP + " (no writer for AcquisitionBucket)",
    ("gadgetron-listen", "header-mutation"): "header errors end the connection without CLOSE",
    ("gadgetron-listen", "huge-length"): _GT_SETUP,
    ("gadgetron-listen", "overwrite"): "a broken header leaves the connection open; raw errors",
    ("gadgetron-listen", "text-mid"): _GT_STOP + " (no reader for TEXT)",
    ("gadgetron-listen", "unknown-id"): _GT_STOP,
    ("gadgetron-execute", "cut-setup"): _GT_SETUP,
}


def examples(category: str, family: str, wanted: int) -> int:
    """One example shows that a known failure still fails; the rest run ``wanted``."""
    return 1 if (category, family) in KNOWN_FAILURES else wanted


def families(category: str, names: list[str]) -> list:
    """``names`` as pytest params, the known failures of ``category`` marked xfail."""
    params = []
    for name in names:
        reason = KNOWN_FAILURES.get((category, name))
        marks = [pytest.mark.xfail(strict=False, reason=reason)] if reason else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params
