"""Fixtures of the fuzz suite: one campaign (base files, a small prior, the servers) per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fuzzkit.campaign import Campaign

BOUND_S = 8.0  # per case; a healthy case takes well under a second or two


@pytest.fixture(scope="session")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campaign]:
    run = Campaign(tmp_path_factory.mktemp("fuzz"), bound_s=BOUND_S)
    yield run
    run.close()
