"""The gadget's configuration: one dataclass, parsed from Gadgetron XML properties."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import torch

from gadget.config import ConfigError, GadgetConfig, config_from_text, properties_from_xml


def test_properties_parse_into_typed_fields() -> None:
    config = config_from_text(
        '<configuration><property name="nfe" value="7"/><property name="sampler" value="dps"/>'
        '<property name="send_complex" value="TRUE"/><property name="checkpoint" value="/p/x"/></configuration>'
    )
    assert (config.nfe, config.sampler, config.send_complex, config.checkpoint) == (
        7,
        "dps",
        True,
        "/p/x",
    )
    assert config.num_samples == GadgetConfig().num_samples


def test_legacy_name_value_children_are_accepted() -> None:
    root = ET.fromstring(
        "<configuration><property><name>seed</name><value>12</value></property></configuration>"
    )
    assert properties_from_xml(root) == {"seed": "12"}


def test_properties_round_trip_through_xml() -> None:
    config = GadgetConfig(
        sampler="song", nfe=3, coil_compression=4, send_uncertainty=False, bf16=True
    )
    assert config_from_text(ET.tostring(config.to_xml())) == config


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ('<property name="nfes" value="3"/>', "unknown gadget properties ['nfes']"),
        ('<property name="nfe" value="three"/>', "property 'nfe': expected an integer"),
        ('<property name="nfe" value="0"/>', "property 'nfe': expected an integer >= 1"),
        ('<property name="sampler" value="ddim"/>', "property 'sampler': expected one of"),
        ('<property name="send_complex" value="maybe"/>', "expected true or false"),
        ('<property name="device" value="tpu"/>', "property 'device'"),
        ('<property name="seed" value="1"/><property name="seed" value="2"/>', "given twice"),
        ('<property name="seed"/>', "malformed property"),
        ('<property name="output_type" value="uint8"/>', "property 'output_type': expected one of"),
        (
            '<property name="max_intensity" value="40000"/>',
            "property 'max_intensity': expected 1..32767",
        ),
        (
            '<property name="max_intensity" value="0"/>',
            "property 'max_intensity': expected 1..32767",
        ),
        ('<property name="cg_select" value="5"/>', "property 'cg_select': expected two or more"),
        ('<property name="cg_select" value="5,5"/>', "distinct CG iteration counts"),
        ('<property name="cg_select" value="0,5"/>', "counts >= 1, comma-separated"),
        ('<property name="cg_select" value="5;10"/>', "got '5;10'"),
        ('<property name="cg_select_nfe" value="0"/>', "'cg_select_nfe': expected an integer >= 1"),
        (
            '<property name="cg_iters_inside" value="-1"/>',
            "'cg_iters_inside': expected an integer >= 0",
        ),
        ('<property name="cg_iters_cut" value="-2"/>', "'cg_iters_cut': expected an integer >= 0"),
        ('<property name="map_sets" value="3"/>', "'map_sets': expected 0 .auto., 1 or 2, got 3"),
    ],
)
def test_bad_properties_are_clear_errors(xml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_text(f"<configuration>{xml}</configuration>")


def test_nothing_to_send_is_an_error() -> None:
    with pytest.raises(ConfigError, match="nothing to send"):
        GadgetConfig(send_magnitude=False, send_uncertainty=False, send_complex=False)
    with pytest.raises(ConfigError, match="only the std with num_samples 1"):
        GadgetConfig(send_magnitude=False, num_samples=1)  # one sample has no std series
    # ... unless its linear-Gaussian width is asked for
    assert GadgetConfig(send_magnitude=False, num_samples=1, linear_width=True).sends_std()


def test_output_type_through_xml_and_the_cli() -> None:
    from gadget.cli import _config, _parser

    config = config_from_text(
        '<configuration><property name="output_type" value="int16"/>'
        '<property name="max_intensity" value="32767"/></configuration>'
    )
    assert (config.output_type, config.max_intensity) == ("int16", 32767)
    assert GadgetConfig().output_type == "float" and GadgetConfig().max_intensity == 4095
    for command in (["replay", "in.h5", "out.h5"], ["serve"]):
        args = _parser().parse_args(
            [*command, "--output-type", "uint16", "--max-intensity", "1023"]
        )
        assert (_config(args).output_type, _config(args).max_intensity) == ("uint16", 1023)


def test_a_whole_chain_gives_the_gadgets_external_configuration() -> None:
    chain = ET.fromstring(
        "<configuration><stream>"
        '<gadget><name>A</name><property name="trigger_dimension" value="slice"/></gadget>'
        '<external><execute name="other.module" target="f" type="python"/>'
        '<configuration><property name="x" value="1"/></configuration></external>'
        '<external><execute name="gadget.handlers" target="handle_acquisitions" type="python"/>'
        '<configuration><property name="nfe" value="9"/></configuration></external>'
        "</stream></configuration>"
    )
    assert properties_from_xml(chain) == {"nfe": "9"}


def test_invalid_xml_text_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid XML"):
        config_from_text("<configuration><property")


def test_samplers_are_those_of_diffusion_core() -> None:
    from diffusion_core.reconstruct import SAMPLERS as CORE_SAMPLERS
    from gadget.config import SAMPLERS

    assert SAMPLERS == CORE_SAMPLERS


def test_cg_select_is_off_by_default_and_reaches_the_reconstruction() -> None:
    from gadget.recon import DiffusionReconstructor

    assert GadgetConfig().cg_candidates() == ()
    config = config_from_text(
        '<configuration><property name="cg_select" value=" 10, 5 "/>'
        '<property name="cg_select_nfe" value="6"/></configuration>'
    )
    assert config.cg_candidates() == (10, 5)
    recon = DiffusionReconstructor(lambda x, sigma: x, config, torch.device("cpu"))
    assert (recon.recon_config.cg_select, recon.recon_config.cg_select_nfe) == ((10, 5), 6)
    plain = DiffusionReconstructor(lambda x, sigma: x, GadgetConfig(), torch.device("cpu"))
    assert plain.recon_config.cg_select == ()


def test_cg_iters_rules_are_on_by_default_and_zero_switches_them_off() -> None:
    from gadget.recon import DiffusionReconstructor

    def recon(config: GadgetConfig) -> DiffusionReconstructor:
        return DiffusionReconstructor(lambda x, sigma: x, config, torch.device("cpu"))

    default = recon(GadgetConfig()).recon_config
    assert (default.cg_iters, default.cg_iters_inside, default.cg_iters_cut) == (5, 10, 3)
    off = config_from_text(
        '<configuration><property name="cg_iters_inside" value="0"/>'
        '<property name="cg_iters_cut" value="0"/></configuration>'
    )
    assert (off.cg_iters_inside, off.cg_iters_cut) == (0, 0)
    rules = recon(off).recon_config
    assert (rules.cg_iters_inside, rules.cg_iters_cut) == (None, None)
