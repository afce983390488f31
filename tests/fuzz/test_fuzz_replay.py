"""Mutated ISMRMRD files through ``replay`` (the Python API; one family also through the CLI)."""

from __future__ import annotations

import pytest
from fuzz_property import check_family
from fuzzkit.datasets import FILE_FAMILIES
from known_failures import examples, families

pytestmark = pytest.mark.timeout(170)


@pytest.mark.parametrize("family", families("file-api", FILE_FAMILIES))
def test_replay_api(campaign, family: str) -> None:
    check_family(campaign, "file-api", family, examples("file-api", family, 2))


@pytest.mark.slow
@pytest.mark.parametrize("family", families("file-cli", ["header-malformed", "acq-samples"]))
def test_replay_cli(campaign, family: str) -> None:
    check_family(campaign, "file-cli", family, examples("file-cli", family, 1))
