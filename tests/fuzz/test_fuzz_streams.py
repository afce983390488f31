"""Byte streams to ``serve`` (MRD) and to the Gadgetron side (``gadget.listen``, execute mode)."""

from __future__ import annotations

import pytest
from fuzz_property import check_family
from fuzzkit.stream_cases import GADGETRON_FAMILIES, MRD_FAMILIES
from known_failures import examples, families

pytestmark = pytest.mark.timeout(170)


@pytest.mark.parametrize("family", families("serve", MRD_FAMILIES))
def test_serve(campaign, family: str) -> None:
    check_family(campaign, "serve", family, examples("serve", family, 3))


@pytest.mark.parametrize("family", families("gadgetron-listen", GADGETRON_FAMILIES))
def test_gadgetron_listen(campaign, family: str) -> None:
    check_family(campaign, "gadgetron-listen", family, examples("gadgetron-listen", family, 2))


@pytest.mark.slow
@pytest.mark.parametrize("family", families("gadgetron-execute", ["valid", "cut-setup"]))
def test_gadgetron_execute(campaign, family: str) -> None:
    check_family(campaign, "gadgetron-execute", family, examples("gadgetron-execute", family, 1))
