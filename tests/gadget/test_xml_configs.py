"""Every chain in xml_configs/ names callables that exist and properties the gadget knows."""

from __future__ import annotations

import importlib
import xml.etree.ElementTree as ET

import pytest
from gadget_helpers import ROOT

from gadget.config import GadgetConfig, config_from_xml

CHAINS = sorted(p for p in (ROOT / "xml_configs").glob("*.xml") if p.stem != "diffusion_worker")
GADGETS = {"gadget", "distributor"}


def test_the_chains() -> None:
    assert {p.stem for p in CHAINS} == {
        "diffusion_acquisitions",
        "diffusion_acquisitions_stored_noise",
        "diffusion_buffers",
        "diffusion_connect",
        "diffusion_distributed",
    }


def _classnames(chain) -> list[str]:
    root = ET.parse(chain).getroot()
    return [n.findtext("classname") for n in root.iter() if n.tag in GADGETS]


def test_buffered_chain_is_ordered_as_gadgetrons_own() -> None:
    names = _classnames(ROOT / "xml_configs" / "diffusion_buffers.xml")
    order = ["NoiseAdjustGadget", "AsymmetricEchoAdjustROGadget", "RemoveROOversamplingGadget"]
    assert names[:3] == order
    assert names[-3:] == ["ComplexToFloatGadget", "FloatToUShortGadget", "ImageFinishGadget"]


def test_stored_noise_chain_prewhitens_with_noise_adjust_before_the_gadget() -> None:
    chain = ROOT / "xml_configs" / "diffusion_acquisitions_stored_noise.xml"
    stream = ET.parse(chain).getroot().find("stream")
    assert [n.tag for n in stream] == ["gadget", "external"]
    assert stream.find("gadget").findtext("classname") == "NoiseAdjustGadget"


@pytest.mark.parametrize("chain", CHAINS, ids=lambda p: p.stem)
def test_chain_targets_resolve_and_properties_are_config_fields(chain) -> None:
    root = ET.parse(chain).getroot()
    if root.find(".//distributed") is not None:
        return  # its worker node has no properties by design: test_distributed_worker.py
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
