"""The gadget's one configuration, parsed once from Gadgetron XML ``<property>`` elements.

Gadgetron forwards the ``<configuration>`` element of an ``<external>`` node to the gadget; its
``<property name="..." value="..."/>`` children (or the legacy ``<property><name/><value/>``
form) are the gadget's properties. Every property is a field of :class:`GadgetConfig`; an
unknown name or a malformed value is a :class:`ConfigError` raised before any data is read.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

SAMPLERS = (
    "dds",
    "song",
    "score_mri",
    "score_mri_ssos",
    "dps",
    "langevin",
)  # diffusion_core.reconstruct.SAMPLERS
DEVICES = ("auto", "cpu", "cuda")
OUTPUT_TYPES = ("float", "uint16", "int16")
MAX_INTENSITY = 32767  # int16's largest value; the bound of max_intensity for both integer types


class ConfigError(ValueError):
    """A gadget property that is unknown or whose value cannot be used."""


@dataclass(frozen=True)
class GadgetConfig:
    """What the gadget does with each slice; one field per XML property.

    Attributes:
        sampler: posterior sampler, one of ``dds``, ``song``, ``score_mri``, ``score_mri_ssos``, ``dps``,
            ``langevin`` (the slow posterior-correct reference).
        nfe: network evaluations per posterior sample (>= 1).
        num_samples: posterior samples per slice; the mean and the pixel-wise std use all of them.
        cg_iters: conjugate-gradient iterations of each data-consistency step (>= 1).
        cg_iters_inside: CG iterations instead for a slice with a line mask whose object lies
            inside the field of view in the phase-encode direction (no signal in the outer
            phase-encode lines of its CG-SENSE image) and whose noise is low (under 0.04 of the
            image scale); 0: always ``cg_iters``. More data trust
            helps there and costs 1.3-1.7 dB on heads the FOV cuts, whose single-set ESPIRiT maps
            are wrong at the seam (``diffusion_core.reconstruct.ReconConfig.cg_iters_inside``).
            Not for lines on a regular grid (parallel imaging), where it does not help.
        cg_iters_cut: CG iterations instead where the FOV cuts the object on both sides in the
            phase-encode direction (line masks; both outer line pairs carry signal): less data
            trust fits less of the maps' error there; also for lines on a regular grid whose
            noise is above the limit; 0: always ``cg_iters``.
        cg_select: candidate ``cg_iters`` (comma-separated, e.g. ``5,10``; empty: off) to choose
            per slice from the data: for 2D (Poisson-like) masks 20 % of the sampled entries
            outside the calibration block are held back and the candidate that predicts them best
            is used (``diffusion_core.reconstruct.ReconConfig.cg_select``; one extra sample of
            ``cg_select_nfe`` NFE per candidate). 1D (line) masks keep ``cg_iters``: that is
            every slice of a 2D Cartesian encoding, whose readouts are whole lines, so this acts
            only on slices with a 2D sampling pattern. Off by default.
        cg_select_nfe: network evaluations of each candidate's trial sample (>= 1).
        map_sets: ESPIRiT map sets: 0 (auto) adds a second set (soft SENSE, a second image
            solved for with the first) where it covers at least 2 % of the object, the sign of a
            phase-encode FOV smaller than the head (tissue folds in) or of a head the FOV cuts;
            1 never; 2 wherever the second set is not empty. ``dps`` and ``score_mri_ssos``
            keep one set. Said in every image's meta (``CoilMapSets``, ``CoilMapSetsNote``).
        checkpoint: path of a ``.safetensors`` prior; empty for the prior shipped with the package.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda`` / ``cuda:N``.
        bf16: run the network under bfloat16 autocast. Faster on CPUs with native bfloat16
            (about 30 % on the 2-core test machine), no faster on an H100; its cost in PSNR is
            measured in ``benchmarks/prior_quality.md``. On CPUs without bfloat16 it can be slower.
        seed: seed of the sampler's random generator; each slice draws from it in stream order.
        coil_compression: number of virtual coils (0 keeps the measured coils).
        send_magnitude: send the posterior mean as a magnitude image (series ``image_series_index``).
        send_complex: send the posterior mean as a complex image (series ``image_series_index + 2``).
        send_uncertainty: send the pixel-wise posterior std (series ``image_series_index + 1``);
            with ``num_samples`` 1 only where ``linear_width`` is on (one sample has no spread;
            the log says so).
        linear_width: with ``num_samples`` 1, send as the std the linear-Gaussian posterior
            width (``diffusion_core.uncertainty.linear_posterior_std``: what the mask, the coils
            and the noise leave unresolved, under a white prior of the images' spread),
            calibrated by the prior's K = 1 entries, labelled uncalibrated where it has none.
            No effect with more samples (their spread is the std).
        image_series_index: image series index of the posterior mean.
        output_type: pixel type of the mean and std series. ``float`` (float32 in the data's
            own units, decimal windows); ``uint16`` or ``int16`` (display / PACS-ready, as
            Gadgetron's FloatToUShort / FloatToShort gadgets and FIRE send): stored =
            round(scale x value) clamped to [0, max_intensity], one scale per stream fixed on
            the first slice (its maximum maps to max_intensity / 2), shared by the mean and the
            std, written as ``GADGETRON_ScaleRatio``; integer windows. The complex series stays
            complex64 in data units.
        max_intensity: largest stored value of integer output, 1..32767 (4095: 12 bits, the
            default of Gadgetron's FloatToUShortGadget and of FIRE's BitsStored).
    """

    sampler: str = "dds"
    nfe: int = 25
    num_samples: int = 4
    cg_iters: int = 5
    cg_iters_inside: int = 10
    cg_iters_cut: int = 3
    cg_select: str = ""
    cg_select_nfe: int = 8
    map_sets: int = 0
    checkpoint: str = ""
    device: str = "auto"
    bf16: bool = False
    seed: int = 0
    coil_compression: int = 0
    send_magnitude: bool = True
    send_complex: bool = False
    send_uncertainty: bool = True
    linear_width: bool = False
    image_series_index: int = 1
    output_type: str = "float"
    max_intensity: int = 4095

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(
                f"property 'sampler': expected one of {SAMPLERS}, got {self.sampler!r}"
            )
        for name, low in (
            ("nfe", 1),
            ("num_samples", 1),
            ("cg_iters", 1),
            ("cg_iters_inside", 0),
            ("cg_iters_cut", 0),
            ("cg_select_nfe", 1),
            ("coil_compression", 0),
        ):
            if getattr(self, name) < low:
                raise ConfigError(
                    f"property {name!r}: expected an integer >= {low}, got {getattr(self, name)}"
                )
        if self.map_sets not in (0, 1, 2):
            raise ConfigError(
                f"property 'map_sets': expected 0 (auto), 1 or 2, got {self.map_sets}"
            )
        self.cg_candidates()  # raises on a malformed list
        if not (self.device in DEVICES or self.device.startswith("cuda:")):
            raise ConfigError(
                f"property 'device': expected auto, cpu, cuda or cuda:N, got {self.device!r}"
            )
        if not 0 <= self.image_series_index <= 65533:
            raise ConfigError(
                f"property 'image_series_index': expected 0..65533, got {self.image_series_index}"
            )
        if self.output_type not in OUTPUT_TYPES:
            raise ConfigError(
                f"property 'output_type': expected one of {OUTPUT_TYPES}, got {self.output_type!r}"
            )
        if not 1 <= self.max_intensity <= MAX_INTENSITY:
            raise ConfigError(
                f"property 'max_intensity': expected 1..{MAX_INTENSITY}, got {self.max_intensity}"
            )
        if not (self.send_magnitude or self.send_complex or self.sends_std()):
            raise ConfigError(
                "properties send_magnitude, send_complex, send_uncertainty are all false "
                "(or only the std with num_samples 1 and linear_width false, which sends none): "
                "nothing to send"
            )

    def sends_std(self) -> bool:
        """Whether a std series is sent: asked for, and K >= 2 or the K = 1 linear width."""
        return self.send_uncertainty and (self.num_samples > 1 or self.linear_width)

    def cg_candidates(self) -> tuple[int, ...]:
        """``cg_select`` as CG iteration counts: () when off, else two or more distinct counts."""
        if not self.cg_select.strip():
            return ()
        try:
            values = tuple(int(v) for v in self.cg_select.replace(" ", "").split(","))
        except ValueError:
            values = ()
        if len(values) < 2 or len(set(values)) != len(values) or min(values) < 1:
            raise ConfigError(
                f"property 'cg_select': expected two or more distinct CG iteration counts >= 1, "
                f"comma-separated (e.g. '5,10'), or empty for off; got {self.cg_select!r}"
            )
        return values

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_properties(cls, properties: Mapping[str, str]) -> GadgetConfig:
        """Build from string properties; unknown names and malformed values raise ConfigError."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(properties) - set(fields))
        if unknown:
            raise ConfigError(f"unknown gadget properties {unknown}; known: {sorted(fields)}")
        values = {
            name: _parse(name, text, type(fields[name].default))
            for name, text in properties.items()
        }
        return cls(**values)  # type: ignore[arg-type]

    def to_properties(self) -> dict[str, str]:
        """The inverse of :meth:`from_properties` (booleans as ``true``/``false``)."""
        return {
            k: (str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in dataclasses.asdict(self).items()
        }

    def to_xml(self) -> ET.Element:
        """A ``<configuration>`` element with one ``<property name value/>`` per field."""
        root = ET.Element("configuration")
        for name, value in self.to_properties().items():
            ET.SubElement(root, "property", name=name, value=value)
        return root


def _parse(name: str, text: str, kind: type) -> object:
    text = text.strip()
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"property {name!r}: expected true or false, got {text!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"property {name!r}: expected an integer, got {text!r}") from None
    return text


def properties_from_xml(root: ET.Element | None) -> dict[str, str]:
    """Name -> value of the gadget's properties in a Gadgetron ``<configuration>`` element.

    Accepts the element Gadgetron forwards to an external gadget (properties as children), or a
    whole Gadgetron chain, from which the ``<configuration>`` of the first ``<external>`` node
    that runs this package is used. ``None`` (no configuration) gives no properties.
    """
    if root is None:
        return {}
    node = root
    if root.find("property") is None:
        for external in root.iter("external"):
            execute = external.find("execute")
            if execute is None or execute.get("name", "").split(".")[0] == "gadget":
                found = external.find("configuration")
                node = found if found is not None else ET.Element("configuration")
                break
    properties: dict[str, str] = {}
    for prop in node.findall("property"):
        name, value = prop.get("name"), prop.get("value")
        if name is None:
            name, value = prop.findtext("name"), prop.findtext("value")
        if not name or value is None:
            raise ConfigError(
                f"malformed property {ET.tostring(prop, encoding='unicode').strip()}: "
                "expected <property name='...' value='...'/>"
            )
        if name in properties:
            raise ConfigError(f"property {name!r} is given twice")
        properties[name] = value
    return properties


def config_from_xml(root: ET.Element | None) -> GadgetConfig:
    """Parse a Gadgetron configuration element (see :func:`properties_from_xml`)."""
    return GadgetConfig.from_properties(properties_from_xml(root))


def config_from_text(text: bytes | str) -> GadgetConfig:
    """Parse configuration XML text; empty text gives the defaults."""
    if not text.strip():
        return GadgetConfig()
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        raise ConfigError(f"configuration: not valid XML ({error})") from None
    return config_from_xml(root)
