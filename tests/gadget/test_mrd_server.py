"""``gadgetron-diffusion serve`` driven by clients that frame bytes as the real ones do.

Where the network is the point, sessions reconstruct with a closed-form stand-in (the
zero-filled root-sum-of-squares image), so the images a client gets can be compared value for
value with the same pipeline run in memory.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import ismrmrd
import numpy as np
import pytest
import torch
from gadget_helpers import ROOT, acquisitions_of, configuration_xml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mrd_clients import fire_bytes_text, fire_session, gadgetron_session

from diffusion_core.coils import rss
from diffusion_core.fft import ifft2c
from diffusion_core.reconstruct import Reconstruction
from gadget.config import GadgetConfig
from gadget.connections import MemoryConnection
from gadget.handlers import handle_acquisitions
from gadget.mrd_config import ServerConfig, ServerLimits
from gadget.server import ClientGone, MrdServer

pytestmark = pytest.mark.timeout(120)
CHAIN = (ROOT / "xml_configs" / "diffusion_acquisitions.xml").read_text()


class ZeroFilled:
    """Slice -> zero-filled RSS image as the posterior mean, std 0; records what it saw."""

    def __init__(self) -> None:
        self.noise: list[torch.Tensor | None] = []

    def __call__(self, assembled):
        self.noise.append(assembled.noise_covariance)
        mean = rss(ifft2c(assembled.kspace)).to(torch.complex64)
        std = torch.zeros(mean.shape)
        return Reconstruction(mean, std, mean[None], assembled.kspace, 1.0, 0.0, mean.abs() >= 0)


@pytest.fixture
def make_server():
    servers = []

    def start(config: ServerConfig | None = None, noise=(), factory=None) -> MrdServer:
        recon = ZeroFilled()
        server = MrdServer(
            ("127.0.0.1", 0),
            config or ServerConfig(GadgetConfig(device="cpu")),
            noise,
            factory or (lambda config, watch: recon),
        )
        server.recon = recon  # type: ignore[attr-defined]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _port(server: MrdServer) -> int:
    return server.server_address[1]


def _in_memory(path: Path, config: GadgetConfig) -> list[ismrmrd.Image]:
    """The same pipeline without the network: what a client must get back."""
    xml, acquisitions = acquisitions_of(path)
    sent: list[object] = []
    connection = MemoryConnection(
        None, ismrmrd.xsd.CreateFromDocument(xml), acquisitions, sent.append
    )
    connection.config = config  # type: ignore[assignment]
    handle_acquisitions(connection, ZeroFilled())
    return [i for i in sent if isinstance(i, ismrmrd.Image)]


def _same_images(got: list[ismrmrd.Image], expected: list[ismrmrd.Image]) -> None:
    assert [(i.image_series_index, i.image_index) for i in got] == [
        (i.image_series_index, i.image_index) for i in expected
    ]
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.data, b.data)
        assert a.meta["DataRole"] == b.meta["DataRole"]


def test_fire_client_with_nul_terminated_texts_and_json_config(make_server, accelerated_file):
    server = make_server()
    xml, acquisitions = acquisitions_of(accelerated_file)
    json_config = (
        '{"version": "1.1.0", "parameters": {"send_complex": "True", "sendOriginal": "False"}}'
    )
    got = fire_session(
        _port(server), xml.decode(), acquisitions, config_file="default", json_config=json_config
    )
    assert got.closed and got.error is None
    expected = _in_memory(accelerated_file, GadgetConfig(device="cpu", send_complex=True))
    assert len(expected) == 6  # 2 repetitions x (mean, std, complex)
    _same_images(got.images, expected)
    assert any("sendOriginal" in t and t.startswith("WARNING") for t in got.texts)
    assert got.texts[-1] == "INFO: 2 slices reconstructed, 6 images sent\n"


@pytest.mark.parametrize("with_nul", [False, True], ids=["gadgetron>=4.1", "gadgetron<=4.0"])
def test_gadgetron_client_with_a_whole_chain_as_config_script(make_server, full_file, with_nul):
    server = make_server()
    xml, acquisitions = acquisitions_of(full_file)
    got = gadgetron_session(
        _port(server), xml.decode(), acquisitions, config_script=CHAIN, with_nul=with_nul
    )
    assert got.closed and got.error is None  # its reader met no id it cannot read
    _same_images(got.images, _in_memory(full_file, GadgetConfig(device="cpu")))
    assert any("'device' is chosen by the server (cpu)" in t for t in got.texts)


def test_unreconstructed_items_are_counted_for_gadgetron_and_returned_to_fire(
    make_server, full_file
):
    xml, acquisitions = acquisitions_of(full_file)
    navigator = ismrmrd.Acquisition.from_bytes(acquisitions[-1].to_bytes())
    navigator.clear_all_flags()
    navigator.set_flag(ismrmrd.ACQ_IS_NAVIGATION_DATA)
    waveform = ismrmrd.Waveform.from_array(np.arange(12, dtype=np.uint32).reshape(2, 6))
    items = [waveform, *acquisitions[:-1], navigator, acquisitions[-1]]
    plain = make_server()
    got = gadgetron_session(_port(plain), xml.decode(), items, config_file="default.xml")
    assert got.closed and got.error is None and len(got.images) == 2
    assert "INFO: not reconstructed and not sent back: 1 Acquisition, 1 Waveform" in got.texts[-2]
    returning = make_server(ServerConfig(GadgetConfig(device="cpu"), return_unprocessed=True))
    got = fire_session(_port(returning), xml.decode(), items, config_file="default")
    assert got.closed and len(got.images) == 2
    assert [a.flags for a in got.acquisitions] == [navigator.flags]
    np.testing.assert_array_equal(got.acquisitions[0].data, navigator.data)
    np.testing.assert_array_equal(got.waveforms[0].data, waveform.data)


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (
            {"config_text": configuration_xml({"nfe": "1000"}).decode()},
            "property 'nfe' is 1000; this server allows at most 100",
        ),
        (
            {"config_text": configuration_xml({"checkpoint": "/etc/passwd"}).decode()},
            "property 'checkpoint' '/etc/passwd': not a prior of this server",
        ),
        ({"config_text": "<configuration><property"}, "CONFIG_TEXT is not well-formed XML"),
        (
            {"config_file": "default", "json_config": '{"parameters": {"cg_select": [5, 40]}}'},
            "property 'cg_select' is '5,40'; this server allows CG iteration counts up to 30",
        ),
        (
            {"config_text": configuration_xml({"cg_iters_inside": "31"}).decode()},
            "property 'cg_iters_inside' is 31; this server allows at most 30",
        ),
    ],
    ids=[
        "nfe-cap",
        "checkpoint-path",
        "bad-xml",
        "cg-cap",
        "cg-inside-cap",
    ],
)
def test_bad_configuration_is_a_text_error_then_close(make_server, full_file, setup, expected):
    server = make_server()
    xml, acquisitions = acquisitions_of(full_file)
    got = fire_session(_port(server), xml.decode(), acquisitions, **setup)
    assert got.closed and got.images == []
    assert len(got.texts) == 1 and got.texts[0].startswith("ERROR: ") and expected in got.texts[0]


def test_an_unknown_configuration_name_gets_the_default_and_a_warning(make_server, full_file):
    """client.py sends CONFIG_FILE 'invertcontrast' unless given -c, and python-ismrmrd-server
    falls back to its default configuration for a name it lacks; so does this server, saying so.
    With refuse_unknown_names the session ends with an ERROR instead."""
    xml, acquisitions = acquisitions_of(full_file)
    server = make_server()
    got = fire_session(_port(server), xml.decode(), acquisitions, config_file="invertcontrast")
    assert got.closed and len(got.images) == 2
    assert got.texts[0].rstrip("\n") == (
        "WARNING: configuration 'invertcontrast' is not one of this server's "
        "['default', 'diffusion_acquisitions']; reconstructing with its default configuration"
    )
    json_choice = '{"parameters": {"config": "x"}}'
    got = fire_session(
        _port(server), xml.decode(), acquisitions, config_file="default", json_config=json_choice
    )
    assert got.closed and len(got.images) == 2
    assert got.texts[0].startswith("WARNING: JSON parameter config: configuration 'x' is not one")
    # a JSON choice that the server has replaces the CONFIG_FILE's, and the note about it
    json_choice = '{"parameters": {"config": "default"}}'
    got = fire_session(
        _port(server),
        xml.decode(),
        acquisitions,
        config_file="invertcontrast",
        json_config=json_choice,
    )
    assert got.closed and len(got.images) == 2 and not any("WARNING" in t for t in got.texts)
    strict = make_server(ServerConfig(GadgetConfig(device="cpu"), refuse_unknown_names=True))
    got = fire_session(_port(strict), xml.decode(), acquisitions, config_file="invertcontrast")
    assert got.closed and got.images == [] and len(got.texts) == 1
    assert got.texts[0].startswith(
        "ERROR: configuration 'invertcontrast' is not one of this server's"
    )


def test_header_over_the_caps_or_missing_an_element_is_a_text_error(make_server, full_file):
    server = make_server(
        ServerConfig(GadgetConfig(device="cpu"), limits=ServerLimits(max_matrix=16))
    )
    xml, acquisitions = acquisitions_of(full_file)
    got = fire_session(_port(server), xml.decode(), acquisitions, config_file="default")
    assert got.closed and got.images == []
    assert "encodedSpace.matrixSize.x is 64; this server reconstructs at most 32" in got.texts[0]
    server = make_server()
    header = ismrmrd.xsd.CreateFromDocument(xml)
    header.encoding[0].encodingLimits.kspace_encoding_step_1 = None
    got = fire_session(_port(server), header.toXML(), acquisitions, config_file="default")
    assert got.closed and got.images == []
    assert got.texts[0].startswith("ERROR: ISMRMRD header: encoding[0].encodingLimits")
    got = fire_session(_port(server), "Dummy XML header", acquisitions, config_file="default")
    assert got.closed and "is not well-formed XML" in got.texts[0]
    assert "expected an <ismrmrdHeader> document" in got.texts[0]


def test_checkpoints_are_chosen_by_name_among_the_servers(make_server, full_file, tmp_path):
    seen: list[str] = []

    def factory(config, watch):
        seen.append(config.checkpoint)
        return ZeroFilled()

    paths = (str(tmp_path / "wide.safetensors"), str(tmp_path / "small"))
    config = ServerConfig(GadgetConfig(device="cpu", checkpoint=paths[0]), paths)
    server = make_server(config, factory=factory)
    xml, acquisitions = acquisitions_of(full_file)
    for requested in ("small", "", paths[1]):
        text = configuration_xml({"checkpoint": requested}).decode()
        got = fire_session(_port(server), xml.decode(), acquisitions, config_text=text)
        assert got.closed and len(got.images) == 2
    assert seen == [paths[1], paths[0], paths[1]]
    got = fire_session(
        _port(server),
        xml.decode(),
        acquisitions,
        config_text=configuration_xml({"checkpoint": "big"}).decode(),
    )
    assert "expected one of ['wide', 'small']" in got.texts[0] and got.images == []


def _setup_bytes(xml: bytes) -> bytes:
    return fire_bytes_text(2, "") + fire_bytes_text(3, xml.decode())


def test_streams_cut_at_every_byte_of_the_setup_end_at_once(make_server, full_file):
    server = make_server()
    xml, acquisitions = acquisitions_of(full_file)
    setup = _setup_bytes(xml)
    started = time.monotonic()
    for cut in range(len(setup)):
        with socket.create_connection(("127.0.0.1", _port(server)), timeout=5) as sock:
            sock.sendall(setup[:cut])
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := sock.recv(4096):  # the server must close: a hang is a timeout here
                reply += chunk
        assert reply == struct.pack("<H", 4), f"cut at byte {cut}: {reply[:60]!r}"
    assert time.monotonic() - started < 60
    got = fire_session(_port(server), xml.decode(), acquisitions, config_file="default")
    assert got.closed and len(got.images) == 2


def test_a_half_sent_acquisition_times_out_and_what_came_is_reconstructed(make_server, full_file):
    limits = ServerLimits(idle_timeout_s=0.5)
    server = make_server(ServerConfig(GadgetConfig(device="cpu"), limits=limits))
    xml, acquisitions = acquisitions_of(full_file)
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=30) as sock:
        sock.sendall(_setup_bytes(xml))
        for acquisition in acquisitions[:-1]:
            sock.sendall(struct.pack("<H", 1008) + acquisition.to_bytes())
        sock.sendall(struct.pack("<H", 1008) + acquisitions[-1].to_bytes()[:100])
        reply = b""  # the client stalls inside a message but keeps reading
        while chunk := sock.recv(1 << 16):
            reply += chunk
    assert reply.count(struct.pack("<H", 1022)) == 2 and reply.endswith(struct.pack("<H", 4))
    assert b"ERROR: the stream ended early: message" in reply
    assert b"not complete within 0.5 s (100 of 340 bytes)" in reply


def test_unknown_message_id_and_oversized_fields_end_with_a_text(make_server, full_file):
    server = make_server()
    xml, acquisitions = acquisitions_of(full_file)
    for bad, expected in (
        (struct.pack("<H", 1030) + b"\0" * 8, b"unknown message id 1030"),
        (
            struct.pack("<HI", 5, 2**32 - 1),
            b"text length is 4294967295; this server accepts at most",
        ),
    ):
        with socket.create_connection(("127.0.0.1", _port(server)), timeout=30) as sock:
            sock.sendall(_setup_bytes(xml))
            for acquisition in acquisitions[:10]:
                sock.sendall(struct.pack("<H", 1008) + acquisition.to_bytes())
            sock.sendall(bad)
            reply = b""
            while chunk := sock.recv(1 << 16):
                reply += chunk
        assert expected in reply and reply.endswith(struct.pack("<H", 4))
        assert reply.count(struct.pack("<H", 1022)) >= 1  # the 10 lines still gave a slice


def test_idle_clients_are_timed_out(make_server, full_file):
    limits = ServerLimits(idle_timeout_s=0.5)
    server = make_server(ServerConfig(GadgetConfig(device="cpu"), limits=limits))
    xml, acquisitions = acquisitions_of(full_file)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as sock:
        reply = sock.recv(4096) + sock.recv(4096)  # says nothing at all
    assert b"idle timeout" in reply and time.monotonic() - started < 5
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as sock:
        sock.sendall(_setup_bytes(xml))
        for acquisition in acquisitions[:20]:
            sock.sendall(struct.pack("<H", 1008) + acquisition.to_bytes())
        reply = b""
        while chunk := sock.recv(1 << 16):
            reply += chunk
    assert b"no message for 0.5 s (idle timeout)" in reply and reply.endswith(struct.pack("<H", 4))
    assert time.monotonic() - started < 15


def test_a_busy_server_says_so(make_server, full_file):
    server = make_server(
        ServerConfig(
            GadgetConfig(device="cpu"), limits=ServerLimits(max_sessions=1, idle_timeout_s=5)
        )
    )
    xml, _ = acquisitions_of(full_file)
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as first:
        first.sendall(_setup_bytes(xml))
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as second:
            reply = second.recv(4096)
    assert b"ERROR: server busy (1 sessions running)" in reply


def test_an_abandoned_session_stops_computing(make_server, full_file):
    steps: list[float] = []
    stopped = threading.Event()

    def slow(config, watch):
        def reconstruct(assembled):
            try:
                for _ in range(400):  # 20 s of "sampler steps" unless the client is gone
                    time.sleep(0.05)
                    watch.check()
                    steps.append(time.monotonic())
            except ClientGone:
                stopped.set()
                raise
            return ZeroFilled()(assembled)

        return reconstruct

    server = make_server(factory=slow)
    xml, acquisitions = acquisitions_of(full_file)
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as sock:
        sock.sendall(_setup_bytes(xml))
        for acquisition in acquisitions:
            sock.sendall(struct.pack("<H", 1008) + acquisition.to_bytes())
        time.sleep(0.5)
    gone = time.monotonic()  # socket closed without CLOSE
    assert stopped.wait(5)
    assert len(steps) < 40 and steps[-1] - gone < 0.5


def test_noise_file_feeds_streams_without_their_own_noise(make_server, accelerated_file):
    xml, acquisitions = acquisitions_of(accelerated_file)
    noise = [a for a in acquisitions if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    imaging = [a for a in acquisitions if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    assert noise and len(imaging) < len(acquisitions)
    runs = {}
    for name, served_noise, stream in (
        ("in-stream", (), acquisitions),
        ("file", noise, imaging),
        ("none", (), imaging),
    ):
        server = make_server(noise=served_noise)
        got = fire_session(_port(server), xml.decode(), stream, config_file="default")
        assert got.closed and len(got.images) == 4
        runs[name] = server.recon.noise
    assert runs["none"] == [None, None]
    for from_file, in_stream in zip(runs["file"], runs["in-stream"], strict=True):
        torch.testing.assert_close(from_file, in_stream, rtol=0, atol=0)


def test_eight_concurrent_clients_share_one_prior(full_file, small_checkpoint, monkeypatch):
    import gadget.recon

    loads = []
    real_load = gadget.recon.load_prior
    monkeypatch.setattr(gadget.recon, "load_prior", lambda *a: loads.append(a) or real_load(*a))
    config = GadgetConfig(
        nfe=1, num_samples=1, cg_iters=1, device="cpu", checkpoint=small_checkpoint,
        send_uncertainty=False,
    )  # fmt: skip
    server = MrdServer(("127.0.0.1", 0), ServerConfig(config))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    xml, acquisitions = acquisitions_of(full_file)
    factors = [1.0 + k for k in range(8)]
    results: dict[int, object] = {}

    def client(k: int) -> None:
        scaled = []
        for a in acquisitions:
            b = ismrmrd.Acquisition.from_bytes(a.to_bytes())
            b.data[:] = a.data * factors[k]
            scaled.append(b)
        results[k] = fire_session(
            server.server_address[1], xml.decode(), scaled, config_file="default"
        )

    try:
        clients = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout=100)
    finally:
        server.shutdown()
        server.server_close()
    assert len(loads) == 1 and len(server.priors) == 1
    images = [results[k].images for k in range(8)]  # type: ignore[attr-defined]
    assert all(len(i) == 1 and i[0].image_index == 1 for i in images)
    base = images[0][0].data
    for k in range(1, 8):  # same seed, data scaled by k+1: the posterior mean scales with it
        np.testing.assert_allclose(
            images[k][0].data, factors[k] * base, rtol=2e-3, atol=1e-3 * base.max() * factors[k]
        )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_shipped_prior_through_the_server_matches_replay_and_beats_zero_filled(
    accelerated_file, full_file, tmp_path
):
    from diffusion_core.metrics import psnr
    from gadget.assembly import assemble, group_slices
    from gadget.geometry import EncodingGeometry
    from gadget.replay import replay
    from gadget.stream import cartesian_acquisitions, noise_adjustment

    config = GadgetConfig(nfe=2, num_samples=2, cg_iters=5, device="cpu")
    server = MrdServer(("127.0.0.1", 0), ServerConfig(config))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        xml, acquisitions = acquisitions_of(accelerated_file)
        got = fire_session(
            server.server_address[1], xml.decode(), acquisitions, config_file="default"
        )
    finally:
        server.shutdown()
        server.server_close()
    assert got.closed and len(got.images) == 4
    replay(accelerated_file, tmp_path / "out.h5", config, progress=False)
    with ismrmrd.Dataset(
        str(tmp_path / "out.h5"), "dataset", create_if_needed=False, mode="r"
    ) as out:
        offline = [out.read_image("image_1", i).data[0, 0] for i in range(2)]
    means = [i.data[0, 0] for i in got.images if i.image_series_index == 1]
    for served, replayed in zip(means, offline, strict=True):
        np.testing.assert_allclose(served, replayed, rtol=1e-4, atol=1e-5 * replayed.max())
    full_xml, full_acqs = acquisitions_of(full_file)
    geometry = EncodingGeometry.from_header(ismrmrd.xsd.CreateFromDocument(full_xml))
    (full,) = [
        assemble(g, geometry)
        for g in group_slices(noise_adjustment(cartesian_acquisitions(full_acqs, list().append)))
    ]
    reference = rss(ifft2c(full.kspace))
    slices = [
        assemble(g, geometry)
        for g in group_slices(noise_adjustment(cartesian_acquisitions(acquisitions, list().append)))
    ]
    for assembled, mean in zip(slices, means, strict=True):
        gain = psnr(reference, torch.from_numpy(mean)) - psnr(
            reference, rss(ifft2c(assembled.kspace))
        )
        assert gain > 2.0, f"repetition {assembled.key.repetition}: PSNR gain {gain:.2f} dB"


@pytest.fixture(scope="module")
def fuzz_server(accelerated_file):
    recon = ZeroFilled()
    limits = ServerLimits(idle_timeout_s=0.3)
    server = MrdServer(
        ("127.0.0.1", 0),
        ServerConfig(GadgetConfig(device="cpu"), limits=limits),
        (),
        lambda c, w: recon,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    xml, acquisitions = acquisitions_of(accelerated_file)
    stream = _setup_bytes(xml) + b"".join(
        struct.pack("<H", 1008) + a.to_bytes() for a in acquisitions[:30]
    )
    yield server, stream
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.slow
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_streams_always_end_with_close(fuzz_server, data):
    """Random cuts and overwritten bytes anywhere in a valid stream: the server answers with
    CLOSE (after any images and TEXT) within its deadlines, and serves the next client."""
    server, stream = fuzz_server
    cut = data.draw(st.integers(0, len(stream)), label="cut")
    mutated = bytearray(stream[:cut])
    for _ in range(data.draw(st.integers(0, 4), label="overwrites")):
        if mutated:
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as sock:
        sock.sendall(bytes(mutated))
        reply = b""
        sock.settimeout(10)
        try:
            while not _ends_with_close(reply) and (chunk := sock.recv(1 << 16)):
                reply += chunk
        except ConnectionResetError:
            pass  # the server stopped reading a stream it could not use
    assert _ends_with_close(reply), f"cut {cut}: {reply[-60:]!r}"
    assert time.monotonic() - started < 8


def _ends_with_close(reply: bytes) -> bool:
    """Walk the server's reply message by message; True if it is whole and ends with CLOSE."""
    at = 0
    while at + 2 <= len(reply):
        (mid,) = struct.unpack_from("<H", reply, at)
        at += 2
        if mid == 4:
            return at == len(reply)
        if mid == 5:
            (length,) = struct.unpack_from("<I", reply, at)
            at += 4 + length
        elif mid == 1022:
            head = ismrmrd.ImageHeader.from_buffer_copy(reply[at : at + 198])
            (attributes,) = struct.unpack_from("<Q", reply, at + 198)
            x, y, z = head.matrix_size
            at += 206 + attributes + head.channels * x * y * z * (8 if head.data_type == 7 else 4)
        else:
            return False
    return False
