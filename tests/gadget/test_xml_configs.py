"""Every chain in xml_configs/ names callables that exist and properties the gadget knows."""

from __future__ import annotations

import importlib
import xml.etree.ElementTree as ET

import pytest
from gadget_helpers import ROOT

from gadget.config import GadgetConfig, config_from_xml

CHAINS = sorted((ROOT / "xml_configs").glob("*.xml"))


def test_there_are_four_chains() -> None:
    assert {p.stem for p in CHAINS} == {
        "diffusion_acquisitions",
        "diffusion_buffers",
        "diffusion_connect",
        "diffusion_distributed",
    }


@pytest.mark.parametrize("chain", CHAINS, ids=lambda p: p.stem)
def test_chain_targets_resolve_and_properties_are_config_fields(chain) -> None:
    root = ET.parse(chain).getroot()
    externals = list(root.iter("external"))
    assert externals, f"{chain.name}: no <external> node"
    for external in externals:
        execute, connect = external.find("execute"), external.find("connect")
        assert (execute is None) != (connect is None), (
            f"{chain.name}: need exactly one of execute/connect"
        )
        if execute is not None:
            assert execute.get("type") == "python"
            module = importlib.import_module(execute.get("name"))
            assert callable(getattr(module, execute.get("target")))
        else:
            assert int(connect.get("port")) > 0
        configuration = external.find("configuration")
        names = {p.get("name") for p in configuration.findall("property")}
        assert names and names <= set(GadgetConfig.field_names())
        assert isinstance(config_from_xml(configuration), GadgetConfig)
