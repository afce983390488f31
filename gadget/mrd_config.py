"""What an MRD client may ask of ``gadgetron-diffusion serve``, and the configuration it gets.

A session's configuration is built once, before any data is read, from (in this order):

1. the configuration message: CONFIG_FILE names one of the server's configurations
   (:attr:`ServerConfig.names`; an unknown name gets the server's default configuration and a
   WARNING saying so, as python-ismrmrd-server falls back to its default, unless the server
   refuses unknown names); CONFIG_TEXT is a ``<configuration>`` with ``<property>``
   elements or a whole Gadgetron chain, whose properties are laid over the server's own;
2. a JSON TEXT message right after the header, as python-ismrmrd-server's client sends a
   ``<config>.json`` / the file's ``configAdditional``: ``{"parameters": {...}}``. Its
   ``config`` / ``customconfig`` entry, when not empty, names a server configuration as
   CONFIG_FILE does; every other parameter named like a gadget property sets it; the rest are
   reported back (TEXT) and ignored.

``device`` and ``bf16`` are the server's; ``checkpoint`` is one of the priors the server was
started with (by name = file stem, or its path as given to the server; empty = the server's
default); cost and size settings are capped by :class:`ServerLimits`. Anything else is a
:class:`SessionError` whose message goes to the client.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import ismrmrd

from gadget.config import ConfigError, GadgetConfig, properties_from_xml
from gadget.mrd_framing import ConfigFileMessage, ConfigTextMessage, FrameLimits

BUILTIN_NAMES = ("default", "diffusion_acquisitions")
SERVER_ONLY = ("device", "bf16")


class SessionError(ValueError):
    """Why a session cannot start (or go on); the text is sent to the client."""


@dataclass(frozen=True)
class ServerLimits:
    """Server-side caps on what one session may cost.

    Attributes:
        max_nfe, max_num_samples, max_cg_iters: caps on the cost properties.
        max_matrix: cap on the encoded and recon matrix (y, and x without oversampling).
        max_channels: cap on receiver channels (header and every acquisition).
        max_sessions: concurrent sessions; one more is told the server is busy.
        idle_timeout_s: a client that sends nothing for this long is closed.
        stall_timeout_s: a client that pauses this long inside a message is told its message
            is incomplete and closed (:class:`~gadget.mrd_framing.FrameLimits`).
    """

    max_nfe: int = 100
    max_num_samples: int = 16
    max_cg_iters: int = 30
    max_matrix: int = 512
    max_channels: int = 64
    max_sessions: int = 16
    idle_timeout_s: float = 60.0
    stall_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_nfe", "max_num_samples", "max_cg_iters", "max_matrix", "max_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"server limit {name}: expected >= 1, got {getattr(self, name)}")
        if self.max_sessions < 1 or self.idle_timeout_s <= 0 or self.stall_timeout_s <= 0:
            raise ValueError(
                "server limits: max_sessions >= 1, idle_timeout_s > 0 and stall_timeout_s > 0 "
                "expected"
            )

    def frame_limits(self) -> FrameLimits:
        """Message limits that follow from these caps (readouts up to 4x oversampled)."""
        return FrameLimits(
            max_samples=4 * self.max_matrix,
            max_channels=self.max_channels,
            idle_timeout_s=self.idle_timeout_s,
            message_timeout_s=self.idle_timeout_s,
            stall_timeout_s=min(self.stall_timeout_s, self.idle_timeout_s),
        )

    def check_config(self, config: GadgetConfig) -> None:
        for name, cap in (
            ("nfe", self.max_nfe),
            ("num_samples", self.max_num_samples),
            ("cg_iters", self.max_cg_iters),
            ("cg_iters_inside", self.max_cg_iters),
            ("cg_iters_cut", self.max_cg_iters),
            ("cg_select_nfe", self.max_nfe),
            ("coil_compression", self.max_channels),
        ):
            if getattr(config, name) > cap:
                raise SessionError(
                    f"property {name!r} is {getattr(config, name)}; this server allows at most {cap}"
                )
        candidates = config.cg_candidates()
        if candidates and max(candidates) > self.max_cg_iters:
            raise SessionError(
                f"property 'cg_select' is {config.cg_select!r}; this server allows CG iteration "
                f"counts up to {self.max_cg_iters}"
            )

    def check_header(self, header: ismrmrd.xsd.ismrmrdHeader) -> None:
        """Matrix sizes and channels the header declares, against the caps."""
        for e, encoding in enumerate(header.encoding or ()):
            for space_name in ("encodedSpace", "reconSpace"):
                matrix = getattr(getattr(encoding, space_name, None), "matrixSize", None)
                if matrix is None:
                    continue
                oversampled = 2 if space_name == "encodedSpace" else 1
                for axis, cap in (("x", oversampled * self.max_matrix), ("y", self.max_matrix)):
                    where = f"encoding[{e}].{space_name}.matrixSize.{axis}"
                    value = _header_int(getattr(matrix, axis) or 0, where)
                    if value > cap:
                        raise SessionError(
                            f"ISMRMRD header: encoding[{e}].{space_name}.matrixSize.{axis} is "
                            f"{value}; this server reconstructs at most {cap}"
                        )
        system = header.acquisitionSystemInformation
        channels = None if system is None else system.receiverChannels
        where = "acquisitionSystemInformation.receiverChannels"
        if channels is not None and _header_int(channels, where) > self.max_channels:
            raise SessionError(
                f"ISMRMRD header: acquisitionSystemInformation.receiverChannels is {channels}; "
                f"this server accepts at most {self.max_channels}"
            )


def _header_int(value: object, where: str) -> int:
    """``value`` of the header element ``where`` as an integer, or a SessionError naming it."""
    try:
        return int(str(value).strip())
    except ValueError:
        raise SessionError(f"ISMRMRD header: {where} is {value!r}; expected an integer") from None


def checkpoint_name(path: str) -> str:
    """The name a client uses for a checkpoint: its file name without ``.safetensors``."""
    name = Path(path).name
    return name[: -len(".safetensors")] if name.endswith(".safetensors") else name


@dataclass(frozen=True)
class ServerConfig:
    """How ``serve`` configures its sessions.

    Attributes:
        default: the server's configuration (its command-line properties); ``checkpoint`` is
            its default prior (empty: the shipped prior).
        checkpoints: the priors clients may choose (paths); the default one is always allowed.
        named: extra configurations by name (CONFIG_FILE), as (name, configuration) pairs.
        limits: the caps on each session.
        return_unprocessed: send back what is not reconstructed (acquisitions, waveforms,
            images of the input). python-ismrmrd-server's client reads them;
            ``gadgetron_ismrmrd_client`` stops at them ("Unknown Message ID"), so it is off
            by default and only counted in a closing TEXT.
        refuse_unknown_names: a CONFIG_FILE (or JSON ``config``) name the server does not have
            ends the session with an ERROR; by default it gets the default configuration and a
            WARNING. python-ismrmrd-server's client sends ``invertcontrast`` unless told
            otherwise, and its reference server falls back to its default configuration.
    """

    default: GadgetConfig = field(default_factory=GadgetConfig)
    checkpoints: tuple[str, ...] = ()
    named: tuple[tuple[str, GadgetConfig], ...] = ()
    limits: ServerLimits = field(default_factory=ServerLimits)
    return_unprocessed: bool = False
    refuse_unknown_names: bool = False

    def __post_init__(self) -> None:
        names = [checkpoint_name(p) for p in self.allowed_checkpoints]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"--checkpoint: two priors share the name(s) {duplicates}")
        clash = sorted(set(dict(self.named)) & set(BUILTIN_NAMES))
        if clash:
            raise ValueError(f"configuration names {clash} are built in; choose other names")
        for _, config in ((None, self.default), *self.named):
            self.limits.check_config(config)

    @property
    def allowed_checkpoints(self) -> tuple[str, ...]:
        paths = [p for p in (self.default.checkpoint, *self.checkpoints) if p]
        return tuple(dict.fromkeys(paths))

    @property
    def names(self) -> tuple[str, ...]:
        """The configuration names CONFIG_FILE may give (also with ``.xml`` appended)."""
        return (*BUILTIN_NAMES, *(name for name, _ in self.named))

    def by_name(self, name: str) -> tuple[GadgetConfig, str | None]:
        """The configuration ``name`` gives, and a note when it is not one of the server's (the
        default is used then, or SessionError if the server refuses unknown names)."""
        base = name[:-4] if name.endswith(".xml") else name
        if base in BUILTIN_NAMES:
            return self.default, None
        for known, config in self.named:
            if known == base:
                return config, None
        problem = f"configuration {name!r} is not one of this server's {list(self.names)}"
        if self.refuse_unknown_names:
            raise SessionError(
                f"{problem}: expected one of them (CONFIG_FILE), or a CONFIG_TEXT with "
                "<property> elements"
            )
        return self.default, f"{problem}; reconstructing with its default configuration"

    def checkpoint(self, requested: str) -> str:
        """The allowed checkpoint a client's ``checkpoint`` property names."""
        if not requested:
            return self.default.checkpoint
        for path in self.allowed_checkpoints:
            if requested in (path, checkpoint_name(path)):
                return path
        offered = [checkpoint_name(p) for p in self.allowed_checkpoints] or ["the shipped prior"]
        raise SessionError(
            f"property 'checkpoint' {requested!r}: not a prior of this server; expected one of "
            f"{offered} or empty (clients may not name files on the server)"
        )


@dataclass(frozen=True)
class SessionConfig:
    """A session's configuration and the notes about it that are sent to the client."""

    config: GadgetConfig
    notes: tuple[str, ...] = ()


def parse_json_config(text: str) -> dict[str, object] | None:
    """The ``parameters`` of a FIRE JSON configuration, or None when ``text`` is not one."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("parameters"), dict):
        return None
    return dict(document["parameters"])


def session_config(
    server: ServerConfig,
    first: ConfigFileMessage | ConfigTextMessage,
    parameters: dict[str, object] | None = None,
) -> SessionConfig:
    """Resolve a session's configuration (see the module docstring); SessionError if it cannot."""
    notes: list[str] = []
    if isinstance(first, ConfigFileMessage):
        (base, note), client = server.by_name(first.name), {}
        notes.extend([note] if note else [])
    else:
        base, client = server.default, _xml_properties(first.text)
    if parameters:
        chosen = str(parameters.get("customconfig") or parameters.get("config") or "")
        if chosen:  # it replaces the CONFIG_FILE's choice, and any note about that
            (base, note), client = server.by_name(chosen), {}
            notes[:] = [f"JSON parameter config: {note}"] if note else []
        unknown = []
        for key, value in parameters.items():
            if key in ("config", "customconfig"):
                continue
            if key in GadgetConfig.field_names():
                client[key] = _parameter_text(value)
            else:
                unknown.append(key)
        if unknown:
            notes.append(
                f"JSON parameters {sorted(unknown)} are not properties of this gadget and were "
                f"ignored; known: {sorted(GadgetConfig.field_names())}"
            )
    for name in SERVER_ONLY:
        if name in client and client.pop(name).strip().lower() != base.to_properties()[name]:
            notes.append(
                f"property {name!r} is chosen by the server ({base.to_properties()[name]})"
            )
    if "checkpoint" in client:
        client["checkpoint"] = server.checkpoint(client["checkpoint"].strip())
    try:
        config = GadgetConfig.from_properties({**base.to_properties(), **client})
    except ConfigError as error:
        raise SessionError(str(error)) from None
    server.limits.check_config(config)
    return SessionConfig(config, tuple(notes))


def _parameter_text(value: object) -> str:
    """A JSON parameter as property text: booleans lower-case, a list comma-separated."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(_parameter_text(v) for v in value)
    return str(value)


def _xml_properties(text: str) -> dict[str, str]:
    if not text.strip():
        return {}
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        raise SessionError(
            f"CONFIG_TEXT is not well-formed XML ({error}); expected a <configuration> with "
            "<property name=... value=.../> elements or a Gadgetron chain"
        ) from None
    try:
        return properties_from_xml(root)
    except ConfigError as error:
        raise SessionError(f"CONFIG_TEXT: {error}") from None
