"""Entry points for Gadgetron's external-language interface.

Gadgetron starts them with ``python -m gadgetron <port> gadget.handlers <target>`` (an
``<execute name="gadget.handlers" target="..." type="python"/>`` node) or connects to one started
with ``python -m gadget.listen`` (a ``<connect>`` node). The replay CLI and the MRD server call
the same functions with their own connections.

* :func:`handle_acquisitions` takes raw ``ismrmrd.Acquisition`` s (noise scans included).
* :func:`handle_recon_data` takes Gadgetron's buffered ReconData (after BucketToBuffer).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

from gadget.config import ConfigError, GadgetConfig, properties_from_xml
from gadget.gadgetron_protocol import (
    BoundedSocket,
    Limits,
    default_readers,
    messages,
    parse_config,
)
from gadget.geometry import EncodingGeometry
from gadget.pipeline import Connection, RunSummary, run_acquisitions, run_recon_data
from gadget.recon import DiffusionReconstructor, PriorCache, Reconstructor

log = logging.getLogger(__name__)


def handle_acquisitions(
    connection: Connection,
    reconstructor: Reconstructor | None = None,
    *,
    priors: PriorCache | None = None,
    defaults: GadgetConfig | None = None,
) -> RunSummary:
    """Reconstruct every slice of a raw acquisition stream and send its images.

    Args:
        connection: a Gadgetron-style connection (``config``, ``header``, iteration, ``send``;
            optionally ``send_error(text)``, which then gets every error before the end).
        reconstructor: slice -> Reconstruction; built from the connection's configuration when None.
        priors: a server's shared prior cache (one loaded prior for all its connections).
        defaults: properties used where the connection's configuration names none (a listener's
            own configuration; Gadgetron's re-serialized worker streams carry none).

    Raises ConfigError / HeaderError before reading any data when the configuration or the
    ISMRMRD header cannot be used (after sending the error to the peer); in execute mode
    (gadgetron-python's connection) SystemExit(1) instead, so the process ends without a traceback.
    """
    return _handle(connection, reconstructor, run_acquisitions, priors, defaults)


def handle_recon_data(
    connection: Connection,
    reconstructor: Reconstructor | None = None,
    *,
    priors: PriorCache | None = None,
    defaults: GadgetConfig | None = None,
) -> RunSummary:
    """Reconstruct Gadgetron's buffered ReconData (one image set per N, S, LOC of each bit)."""
    return _handle(connection, reconstructor, run_recon_data, priors, defaults)


def _handle(
    connection: Connection,
    reconstructor: Reconstructor | None,
    run: Callable[[Connection, GadgetConfig, EncodingGeometry, Reconstructor], RunSummary],
    priors: PriorCache | None,
    defaults: GadgetConfig | None,
) -> RunSummary:
    """Set-up shared by both handlers (validated before any data is read), then ``run``; every
    error is sent to the peer (``send_error``) before the handler returns or raises."""
    connection = _adapt(connection)
    try:
        config, geometry = _read_setup(connection, defaults)
        if reconstructor is None:
            reconstructor = DiffusionReconstructor.from_config(config, priors=priors)
    except (ValueError, RuntimeError, OSError) as error:  # bad properties/header, no prior
        log.error("cannot start: %s", error)
        report_error(connection, f"gadgetron-diffusion cannot start: {error}")
        if isinstance(connection, _GadgetronPythonConnection):
            # execute mode: the error is logged and Gadgetron has it as ERROR; end the process
            # with status 1 instead of gadgetron-python's traceback of a handled input error
            raise SystemExit(1) from None
        raise
    summary = run(connection, config, geometry, reconstructor)
    _log_summary(summary)
    if not summary.ok:
        report_error(connection, summary.error_text())
    return summary


def report_error(connection: object, text: str) -> None:
    """Send ``text`` to the peer if the connection can (Gadgetron: ERROR; MRD: the server's choice)."""
    send_error = getattr(connection, "send_error", None)
    if send_error is None:
        return
    try:
        send_error(text)
    except OSError as error:
        log.debug("could not report the error, peer gone: %s", error)


def _read_setup(
    connection: Connection, defaults: GadgetConfig | None
) -> tuple[GadgetConfig, EncodingGeometry]:
    """Configuration and encoding geometry, validated before any data is read."""
    config = _config_of(connection, defaults or GadgetConfig())
    geometry = EncodingGeometry.from_header(connection.header)
    log.info("configuration: %s", config)
    return config, geometry


def _config_of(connection: Connection, defaults: GadgetConfig) -> GadgetConfig:
    """The connection's properties over ``defaults`` (a GadgetConfig from the MRD server as is)."""
    config = connection.config
    if isinstance(config, GadgetConfig):
        return config
    if isinstance(config, bytes):
        config = parse_config(config)
    if config is not None and not isinstance(config, ET.Element):
        raise ConfigError(
            f"connection.config: expected an XML element, got {type(config).__name__}"
        )
    properties = properties_from_xml(config)
    if not properties:
        return defaults
    return GadgetConfig.from_properties({**defaults.to_properties(), **properties})


def _log_summary(summary: RunSummary) -> None:
    log.info("done: %d slices, %d images sent", summary.slices_done, summary.images_sent)
    for failure in summary.failed:
        log.warning("failed %s", failure)


EofSafeSocket = BoundedSocket  # the name the test helpers and benchmarks use


class _GadgetronPythonConnection:
    """gadgetron-python's ``Connection`` (execute mode) read through :class:`BoundedSocket`.

    ``python -m gadgetron`` has already read CONFIG and HEADER with its own wrapper; from here on
    every read ends at EOF, an unknown message id ends the stream with a clear error instead of
    silently, and errors go back to Gadgetron as ERROR messages (its ``close`` sends CLOSE).
    """

    def __init__(self, connection: Any) -> None:
        inner = connection.socket
        self.stream = inner if isinstance(inner, BoundedSocket) else BoundedSocket(inner.socket)
        self.stream.socket.settimeout(None)
        connection.socket = self.stream
        self._connection = connection
        raw = getattr(getattr(connection, "raw_bytes", None), "config", None)
        config = getattr(connection, "config", None)
        # gadgetron-python parses CONFIG leniently (None on a parse error); re-parse the raw
        # bytes in _config_of so the error is reported, and a declaration-only one means none.
        self.config = config if config is not None or not raw else bytes(raw)
        self.header = connection.header

    def __iter__(self) -> Iterator[object]:
        return messages(self.stream, default_readers(), stall_timeout_s=Limits.stall_timeout_s)

    def send(self, item: object) -> None:
        self._connection.send(item)

    def send_error(self, text: str) -> None:
        self.stream.send_error(text)


def _adapt(connection: Connection) -> Connection:
    """Wrap gadgetron-python's Connection; any other connection is used as it is."""
    from gadgetron.external.connection import Connection as GadgetronPythonConnection

    if isinstance(connection, GadgetronPythonConnection):
        return _GadgetronPythonConnection(connection)
    return connection
