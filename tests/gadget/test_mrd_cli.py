"""``gadgetron-diffusion serve`` from the command line: options, start-up errors, a real run."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from gadget_helpers import acquisitions_of, free_port
from mrd_clients import fire_session

from gadget.cli import _parser, main


def test_serve_defaults_to_loopback_and_lists_its_configuration_names(capsys) -> None:
    args = _parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.checkpoint == [] and args.idle_timeout == 60.0
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "CONFIG_FILE names it knows: default, diffusion_acquisitions" in text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--nfe", "500"], "property 'nfe' is 500; this server allows at most 100"),
        (["--noise", "missing.h5"], "missing.h5: no such file (noise file)"),
        (["--config-name", "fast"], "--config-name 'fast': expected NAME=FILE.xml"),
        (["--config-name", "default=x.xml"], "x.xml"),
        (["--checkpoint", "a/p.safetensors", "--checkpoint", "b/p"], "share the name(s) ['p']"),
        (["--idle-timeout", "0"], "idle_timeout_s > 0"),
        (["--checkpoint", "nowhere/prior"], "nowhere/prior"),
        (["--device", "cuda:7", "--port", "0"], "no CUDA device is available"),
        (
            ["--max-cg-iters", "5", "--port", "0"],
            "property 'cg_iters_inside' is 10; this server allows at most 5",
        ),
    ],
)
def test_bad_serve_options_exit_2_with_a_reason(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["serve", *argv]) == 2
    assert expected in capsys.readouterr().err


def test_named_configurations_from_files(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "fast.xml").write_text(
        '<configuration><property name="nfe" value="500"/></configuration>'
    )
    assert main(["serve", "--config-name", f"fast={tmp_path / 'fast.xml'}"]) == 2
    assert "property 'nfe' is 500" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_serve_command_serves_a_fire_client(accelerated_file, small_checkpoint, tmp_path):
    port = free_port()
    command = [
        sys.executable, "-m", "gadget.cli", "serve", "--port", str(port), "--device", "cpu",
        "--checkpoint", small_checkpoint, "--nfe", "1", "--samples", "1", "--cg-iters", "1",
    ]  # fmt: skip
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        log = ""
        deadline = time.monotonic() + 60
        while "MRD server listening" not in log and time.monotonic() < deadline:
            log += server.stderr.readline()  # type: ignore[union-attr]
        assert re.search(rf"listening on 127\.0\.0\.1:{port}; configurations \['default'", log)
        xml, acquisitions = acquisitions_of(accelerated_file)
        got = fire_session(port, xml.decode(), acquisitions, config_file="default")
        assert got.closed and len(got.images) == 2  # one sample: the means, no std series
        assert got.texts[-1] == "INFO: 2 slices reconstructed, 2 images sent\n"
    finally:
        server.terminate()
        server.communicate(timeout=30)
