"""The distributed chain as a worker receives it: the XML rebuilt as Gadgetron's Config.cpp
serializer writes it (pugixml, tab indent), parsed as the worker's V2 parser reads it, and the
connection the worker's external node then opens replayed against ``gadget.listen``."""

from __future__ import annotations

import functools
import socket
import struct
import threading
import xml.etree.ElementTree as ET

import ismrmrd
from gadget_helpers import ROOT, acquisitions_of
from test_gadgetron_listen import data_bytes, fake_reconstructor, images, replies, setup_bytes

from gadget import handlers
from gadget.listen import Listener, _defaults

CHAIN = ROOT / "xml_configs" / "diffusion_distributed.xml"
WORKER_PROPERTIES = ROOT / "xml_configs" / "diffusion_worker.xml"


def _base(node: ET.Element, tag: str, depth: int) -> list[str]:
    pad = "\t" * depth
    return [
        f"{pad}<{tag}>",
        f"{pad}\t<dll>{node.findtext('dll')}</dll>",
        f"{pad}\t<classname>{node.findtext('classname')}</classname>",
    ]


def _list(nodes: ET.Element | None, tag: str, depth: int) -> list[str]:
    pad = "\t" * depth
    children = [] if nodes is None else list(nodes)
    if not children:
        return [f"{pad}<{tag}s />"]
    lines = [f"{pad}<{tag}s>"]
    for child in children:
        lines += [*_base(child, tag, depth + 1), f"{pad}\t</{tag}>"]
    return [*lines, f"{pad}</{tag}s>"]


def _node(node: ET.Element, depth: int) -> list[str]:
    """One stream node as XMLSerializer::add_node writes it."""
    pad = "\t" * depth
    if node.tag == "external":
        lines = [
            f"{pad}<external>",
            *_list(None, "reader", depth + 1),
            *_list(None, "writer", depth + 1),
        ]
        execute, connect = node.find("execute"), node.find("connect")
        if execute is not None:  # name and type only; no target
            lines.append(
                f'{pad}\t<execute name="{execute.get("name")}" type="{execute.get("type")}" />'
            )
        else:  # port only; no address
            lines.append(f'{pad}\t<connect port="{connect.get("port")}" />')
        # external.configuration->document: append_copy of a document node is refused by pugixml
        return [*lines, f"{pad}</external>"]
    lines = [*_base(node, "gadget", depth), f"{pad}\t<name>{node.findtext('name')}</name>"]
    for p in node.findall("property"):
        lines.append(f'{pad}\t<property name="{p.get("name")}" value="{p.get("value")}" />')
    return [*lines, f"{pad}</gadget>"]


def worker_config(chain: ET.Element) -> str:
    """serialize_config(Config{distributed.readers, distributed.writers, distributed.stream})."""
    distributed = chain.find(".//distributed")
    lines = ['<?xml version="1.0"?>', "<configuration>", "\t<version>2</version>"]
    lines += _list(distributed.find("readers"), "reader", 1)
    lines += _list(distributed.find("writers"), "writer", 1)
    stream = distributed.find("stream")
    lines.append(f'\t<stream key="{stream.get("key", "")}">')
    for node in stream:
        lines += _node(node, 2)
    return "\n".join([*lines, "\t</stream>", "</configuration>", ""])


def test_worker_receives_a_connect_node_without_configuration() -> None:
    text = worker_config(ET.parse(CHAIN).getroot())
    worker = ET.fromstring(text)
    assert worker.findtext("version") == "2"
    (external,) = worker.find("stream")
    assert external.tag == "external" and external.find("configuration") is None
    assert (
        external.find("execute") is None
    )  # would start `python -m gadgetron PORT name`, no target
    connect = external.find("connect")
    assert connect.attrib == {"port": "18000"}  # no address: the worker connects to localhost
    assert [r.findtext("classname") for r in worker.find("readers")] == [
        "AcquisitionReader",
        "ImageReader",
    ]


def test_worker_connection_replayed_against_the_listener(accelerated_file) -> None:
    """What the worker's external node sends: CONFIG holding the empty pugixml document, the
    header, the slice's lines, CLOSE; the listener uses diffusion_worker.xml's properties."""
    defaults = _defaults(WORKER_PROPERTIES)
    assert (defaults.nfe, defaults.num_samples) == (25, 4)
    handler = functools.partial(
        handlers.handle_acquisitions, reconstructor=fake_reconstructor, defaults=defaults
    )
    server = Listener(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    xml, acquisitions = acquisitions_of(accelerated_file)
    lines = [a for a in acquisitions[1:] if a.idx.repetition == 0]
    empty_document = b'<?xml version="1.0"?>\n'  # pugixml's save() of a document with no nodes
    try:
        results = []
        for _ in range(2):  # two slices, two connections, one listener
            with socket.create_connection(server.address, timeout=10) as sock:
                sock.sendall(
                    setup_bytes(empty_document, xml) + data_bytes([*lines, struct.pack("<H", 4)])
                )
                results.append(replies(sock))
    finally:
        server.shutdown()
    for items, errors, closed in results:
        assert closed and errors == []
        got = images(items)
        assert [g.image_series_index for g in got] == [1, 2]
        meta = ismrmrd.Meta.deserialize(got[0].attribute_string)
        assert "of 4 samples, dds, 25 NFE" in meta["ImageComment"]


def test_an_execute_worker_without_target_cannot_start(full_file) -> None:
    """What the old design's worker would run: `python -m gadgetron PORT gadget.handlers`."""
    import subprocess
    import sys

    xml, _ = acquisitions_of(full_file)
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(60)
        process = subprocess.Popen(
            [sys.executable, "-m", "gadgetron", str(server.getsockname()[1]), "gadget.handlers"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        sock, _ = server.accept()
        with sock:
            sock.sendall(setup_bytes(b'<?xml version="1.0"?>\n', xml))
            output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "attribute name must be string" in output


def test_listener_refuses_a_bad_config_file(tmp_path) -> None:
    from gadget.listen import main

    bad = tmp_path / "props.xml"
    bad.write_text('<configuration><property name="nfe" value="many"/></configuration>')
    assert main(["0", "--config", str(bad), "--once"]) == 2
    assert main(["0", "--config", str(tmp_path / "missing.xml"), "--once"]) == 2
