"""The MRD streaming server driven by clients built on ismrmrd's protocol serializer."""

from __future__ import annotations

import socket
import threading

import ismrmrd
import pytest
from gadget_helpers import MATRIX, acquisitions_of, configuration_xml
from ismrmrd.serialization import ConfigFile, ConfigText, ProtocolDeserializer, ProtocolSerializer

from gadget.config import GadgetConfig
from gadget.server import MrdServer

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def server(fast_properties):
    """A server on a free port whose named configuration is the fast one."""
    mrd = MrdServer(("127.0.0.1", 0), GadgetConfig.from_properties(fast_properties))
    thread = threading.Thread(target=mrd.serve_forever, daemon=True)
    thread.start()
    yield mrd
    mrd.shutdown()
    mrd.server_close()
    thread.join(timeout=10)


def _session(
    port: int, config: object, header: ismrmrd.xsd.ismrmrdHeader, items: list[object]
) -> list[object]:
    """One client: config, header, a text message, the items, CLOSE; returns what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        writer, reader = sock.makefile("wb"), sock.makefile("rb")
        serializer = ProtocolSerializer(writer)
        serializer.serialize(config)
        serializer.serialize(header)
        serializer.serialize("client log line: starting")
        for item in items:
            serializer.serialize(item)
        serializer.close()
        received = list(ProtocolDeserializer(reader).deserialize())  # ends at the server's CLOSE
        writer.close()
        reader.close()
    return received


def test_two_clients_at_once_each_get_their_own_images(
    server, accelerated_file, full_file, fast_properties
) -> None:
    port = server.server_address[1]
    xml_a, acqs_a = acquisitions_of(accelerated_file)
    xml_b, acqs_b = acquisitions_of(full_file)
    results: dict[str, list[object]] = {}

    def run(name, config, xml, acqs):
        results[name] = _session(port, config, ismrmrd.xsd.CreateFromDocument(xml), acqs)

    by_text = ConfigText(configuration_xml({**fast_properties, "send_complex": "true"}).decode())
    clients = [
        threading.Thread(target=run, args=("a", ConfigFile("default.xml"), xml_a, acqs_a)),
        threading.Thread(target=run, args=("b", by_text, xml_b, acqs_b)),
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=170)
    assert set(results) == {"a", "b"}
    a, b = results["a"], results["b"]
    assert all(isinstance(i, ismrmrd.Image) for i in a + b)
    assert len(a) == 4 and {i.image_series_index for i in a} == {
        1,
        2,
    }  # 2 repetitions x (mean, std)
    assert len(b) == 3 and {i.image_series_index for i in b} == {
        1,
        2,
        3,
    }  # 1 slice x (mean, std, complex)
    assert [i.image_index for i in a if i.image_series_index == 1] == [
        1,
        2,
    ]  # numbering is per connection
    assert all(i.matrix_size == (MATRIX, MATRIX, 1) for i in a + b)


def test_bad_configuration_gets_close_not_a_hang(server, accelerated_file) -> None:
    xml, acqs = acquisitions_of(accelerated_file)
    bad = ConfigText('<configuration><property name="bogus" value="1"/></configuration>')
    received = _session(
        server.server_address[1], bad, ismrmrd.xsd.CreateFromDocument(xml), acqs[:5]
    )
    assert received == []


def test_dropped_client_does_not_stop_the_server(server, accelerated_file, fast_properties) -> None:
    port = server.server_address[1]
    xml, acqs = acquisitions_of(accelerated_file)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        writer = sock.makefile("wb")
        serializer = ProtocolSerializer(writer)
        serializer.serialize(ConfigFile("default.xml"))
        serializer.serialize(ismrmrd.xsd.CreateFromDocument(xml))
        for acq in acqs[:10]:
            serializer.serialize(acq)
        writer.write(b"\xf0\x03" + acqs[10].to_bytes()[:50])  # half an acquisition, then gone
        writer.flush()
        writer.close()
    received = _session(port, ConfigFile("default.xml"), ismrmrd.xsd.CreateFromDocument(xml), acqs)
    assert len(received) == 4
