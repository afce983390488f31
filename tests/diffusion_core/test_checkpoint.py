"""Checkpoints: safetensors + model card round trip; tampered, incomplete or mismatched files refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffusion_core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_card,
    save_checkpoint,
    sha256_of,
)
from diffusion_core.denoiser import PreconditionedDenoiser
from diffusion_core.networks.unet import UNet, UNetConfig

TINY = UNetConfig(base_channels=8, channel_mult=(1, 2), attention_levels=(1,))


def _denoiser(seed: int = 0) -> PreconditionedDenoiser:
    return PreconditionedDenoiser(UNet(TINY, generator=torch.Generator().manual_seed(seed)), 0.4)


def _x() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.complex(torch.randn(2, 20, 12, generator=g), torch.randn(2, 20, 12, generator=g))


def test_round_trip_keeps_outputs_and_card(tmp_path: Path) -> None:
    denoiser = _denoiser()
    weights, card_path = save_checkpoint(tmp_path / "prior", denoiser, {"training": {"steps": 7}})
    assert weights.name == "prior.safetensors" and card_path.name == "prior.json"
    card = read_card(tmp_path / "prior")
    assert card["sha256"] == sha256_of(weights)
    assert card["architecture"]["config"] == TINY.to_dict()
    assert card["denoiser"]["sigma_data"] == 0.4 and card["training"]["steps"] == 7
    for path in (tmp_path / "prior", weights, card_path):  # any of the three names works
        loaded = load_checkpoint(path)
        assert loaded.sigma_data == 0.4 and not loaded.training
        with torch.no_grad():
            assert torch.equal(loaded(_x(), 0.7), denoiser(_x(), 0.7))


def test_float16_storage_halves_the_file(tmp_path: Path) -> None:
    denoiser = _denoiser()
    full, _ = save_checkpoint(tmp_path / "a", denoiser, {})
    half, _ = save_checkpoint(tmp_path / "b", denoiser, {}, weights_dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    with torch.no_grad():
        err = (load_checkpoint(half)(_x(), 0.7) - denoiser(_x(), 0.7)).abs().max()
    assert 0 < float(err) < 1e-2


def test_tampered_weights_fail_the_checksum(tmp_path: Path) -> None:
    weights, _ = save_checkpoint(tmp_path / "p", _denoiser(), {})
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"p\.safetensors: SHA-256 .* does not match"):
        load_checkpoint(tmp_path / "p")


def _rewrite(weights: Path, card_path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write new tensors and a card whose checksum matches them (so only the content differs)."""
    save_file(tensors, str(weights))
    card = json.loads(card_path.read_text())
    card["sha256"] = sha256_of(weights)
    card_path.write_text(json.dumps(card))


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    weights, card_path = save_checkpoint(tmp_path / "p", _denoiser(), {})
    tensors = load_file(str(weights))
    del tensors["conv_out.bias"]
    _rewrite(weights, card_path, tensors)
    with pytest.raises(CheckpointError, match=r"p\.safetensors: missing 1 tensor.*conv_out\.bias"):
        load_checkpoint(weights)


def test_architecture_mismatch_names_the_tensor_and_shapes(tmp_path: Path) -> None:
    weights, card_path = save_checkpoint(tmp_path / "p", _denoiser(), {})
    card = json.loads(card_path.read_text())
    card["architecture"]["config"]["base_channels"] = 16
    card_path.write_text(json.dumps(card))
    with pytest.raises(
        CheckpointError,
        match=r"p\.safetensors: architecture mismatch at 'embed\.mlp\.0\.weight'.*\(32, 8\).*\(64, 16\)",
    ):
        load_checkpoint(weights)


def test_missing_card_and_weights_are_named(tmp_path: Path) -> None:
    weights, card_path = save_checkpoint(tmp_path / "p", _denoiser(), {})
    weights.unlink()
    with pytest.raises(CheckpointError, match=r"p\.safetensors: weights file not found"):
        load_checkpoint(card_path)
    card_path.unlink()
    with pytest.raises(CheckpointError, match=r"p\.safetensors: checkpoint not found"):
        load_checkpoint(tmp_path / "p")
    save_checkpoint(tmp_path / "q", _denoiser(), {})[1].unlink()
    with pytest.raises(CheckpointError, match=r"q\.json: model card not found"):
        load_checkpoint(tmp_path / "q")


def test_loading_never_unpickles(tmp_path: Path) -> None:
    """A pickle (torch.save) file under the weights' name is rejected, not executed."""
    weights, card_path = save_checkpoint(tmp_path / "p", _denoiser(), {})
    torch.save({"x": torch.ones(1)}, weights)
    _card = json.loads(card_path.read_text())
    _card["sha256"] = sha256_of(weights)
    card_path.write_text(json.dumps(_card))
    with pytest.raises(Exception, match=r"(?i)header|safetensor|deserializ"):
        load_checkpoint(weights)
