"""Safe checkpoints: safetensors weights plus a JSON model card; loading never unpickles.

``<stem>.safetensors`` holds the U-Net's tensors; ``<stem>.json`` is the model card::

    {"format": "gadgetron-diffusion-checkpoint", "format_version": 1,
     "weights_file": "<stem>.safetensors", "sha256": "<hex digest of the weights file>",
     "architecture": {"class": "UNet", "config": {...UNetConfig...}},
     "denoiser": {"class": "PreconditionedDenoiser", "sigma_data": 0.5},
     "normalization": "...", ...anything the caller adds (training data, steps, losses, command)}

:func:`load_checkpoint` checks the digest, builds the U-Net from the card and requires the file's
tensors to match it name by name and shape by shape; every failure names the file and the difference.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffusion_core.denoiser import PatchDenoiser, PreconditionedDenoiser
from diffusion_core.networks.unet import UNet, UNetConfig

FORMAT = "gadgetron-diffusion-checkpoint"
FORMAT_VERSION = 1
NORMALIZATION_RULE = (
    "each complex slice divided by the 99th percentile of its magnitude "
    "(diffusion_core.normalization.magnitude_scale)"
)


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupted or does not match its model card."""


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(weights, card) paths for a stem, a ``.safetensors`` path or a ``.json`` path."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_checkpoint(
    path_stem: str | os.PathLike[str],
    denoiser_or_net: PreconditionedDenoiser | UNet,
    card: dict[str, Any],
    weights_dtype: torch.dtype = torch.float32,
) -> tuple[Path, Path]:
    """Write ``<stem>.safetensors`` and ``<stem>.json``; return their paths.

    ``card`` holds what the caller knows (training data and licenses, steps, validation loss,
    command); the format, architecture, denoiser settings, normalisation rule and weights digest
    are filled in here. Floating tensors are stored as ``weights_dtype`` (float16 halves the file).
    Both files are written to temporary names first and renamed, so a crash leaves the old pair.
    """
    from safetensors.torch import save

    if isinstance(denoiser_or_net, PreconditionedDenoiser):
        net, sigma_data = denoiser_or_net.net, denoiser_or_net.sigma_data
    else:
        net, sigma_data = denoiser_or_net, float(card.get("sigma_data", 0.5))
    denoiser_block: dict[str, Any] = {"class": "PreconditionedDenoiser", "sigma_data": sigma_data}
    if isinstance(denoiser_or_net, PatchDenoiser):
        denoiser_block = {
            "class": "PatchDenoiser",
            "sigma_data": sigma_data,
            "patch": denoiser_or_net.patch,
        }
    if not isinstance(net, UNet):
        raise TypeError(
            f"save_checkpoint: expected a UNet inside the denoiser, got {type(net).__name__}"
        )
    weights_path, card_path = checkpoint_paths(path_stem)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: (t.detach().to(weights_dtype) if t.is_floating_point() else t.detach())
        .cpu()
        .contiguous()
        for name, t in net.state_dict().items()
    }
    _atomic_write_bytes(weights_path, save(tensors, metadata={"format": FORMAT}))
    full_card = {
        **card,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights_file": weights_path.name,
        "sha256": sha256_of(weights_path),
        "weights_dtype": str(weights_dtype).removeprefix("torch."),
        "architecture": {"class": "UNet", "config": net.config.to_dict()},
        "denoiser": denoiser_block,
        "normalization": NORMALIZATION_RULE,
    }
    _atomic_write_bytes(
        card_path, (json.dumps(full_card, indent=2, sort_keys=False) + "\n").encode()
    )
    return weights_path, card_path


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The model card (JSON) of a checkpoint given by stem, weights path or card path."""
    _, card_path = checkpoint_paths(path)
    if not card_path.is_file():
        raise CheckpointError(f"{card_path}: model card not found (expected beside the weights)")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{card_path}: not valid JSON ({err})") from err
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise CheckpointError(
            f"{card_path}: not a {FORMAT} model card (format={card.get('format')!r})"
        )
    for key in ("sha256", "architecture", "denoiser"):
        if key not in card:
            raise CheckpointError(f"{card_path}: model card lacks '{key}'")
    return card


def _check_tensors(weights_path: Path, net: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise CheckpointError(
            f"{weights_path}: missing {len(missing)} tensor(s) the architecture needs: {missing[:5]}"
        )
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise CheckpointError(
            f"{weights_path}: {len(unexpected)} tensor(s) not in the architecture: {unexpected[:5]}"
        )
    for name, t in expected.items():
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise CheckpointError(
                f"{weights_path}: architecture mismatch at '{name}': the file has shape "
                f"{tuple(tensors[name].shape)}, the model card's architecture needs {tuple(t.shape)}"
            )


def load_checkpoint(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    autocast_bf16: bool = False,
) -> PreconditionedDenoiser:
    """The denoiser of a checkpoint (stem, ``.safetensors`` or ``.json``), on ``device``, in eval mode;
    ``autocast_bf16`` runs its network under bfloat16 autocast (the weights stay float32).

    Raises :class:`CheckpointError` naming the file when the card is missing or malformed, the
    weights' SHA-256 differs from the card's, or the tensors do not match the card's architecture.
    """
    from safetensors.torch import load_file

    weights_path, card_path = checkpoint_paths(path)
    if not weights_path.is_file() and not card_path.is_file():
        raise CheckpointError(f"{weights_path}: checkpoint not found (no such file)")
    card = read_card(path)
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: weights file not found (named by {card_path.name})")
    digest = sha256_of(weights_path)
    if digest != card["sha256"]:
        raise CheckpointError(
            f"{weights_path}: SHA-256 {digest} does not match {card['sha256']} in {card_path.name}; "
            "the weights were changed or corrupted"
        )
    arch = card["architecture"]
    if arch.get("class") != "UNet":
        raise CheckpointError(
            f"{card_path}: unknown architecture class {arch.get('class')!r}; expected 'UNet'"
        )
    try:
        config = UNetConfig.from_dict(arch["config"])
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{card_path}: invalid architecture config ({err})") from err
    net = UNet(config)
    tensors = load_file(str(weights_path))
    _check_tensors(weights_path, net, tensors)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    block = card["denoiser"]
    sigma_data = float(block.get("sigma_data", 0.5))
    kind = block.get("class", "PreconditionedDenoiser")
    denoiser: PreconditionedDenoiser
    if kind == "PreconditionedDenoiser":
        denoiser = PreconditionedDenoiser(net, sigma_data=sigma_data, autocast_bf16=autocast_bf16)
    elif kind == "PatchDenoiser":
        patch = block.get("patch")
        if not isinstance(patch, int) or patch < 4:
            raise CheckpointError(
                f"{card_path}: denoiser 'PatchDenoiser' needs an integer 'patch' >= 4, got {patch!r}"
            )
        denoiser = PatchDenoiser(net, patch, sigma_data, autocast_bf16)
    else:
        raise CheckpointError(
            f"{card_path}: unknown denoiser class {kind!r}; expected 'PreconditionedDenoiser' or "
            "'PatchDenoiser'"
        )
    return denoiser.to(device).eval()


def read_calibration(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``calibration`` block of a checkpoint's model card (see :mod:`diffusion_core.uncertainty`),
    or None when the card has none."""
    block = read_card(path).get("calibration")
    if block is not None and not isinstance(block, dict):
        raise CheckpointError(f"{checkpoint_paths(path)[1]}: 'calibration' is not an object")
    return block


def write_calibration(
    path: str | os.PathLike[str], block: dict[str, Any], out: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``block`` as the model card's ``calibration``; return the card written.

    ``out`` (a stem or path) writes a copy, card and weights, and leaves ``path`` as it was; the
    weights' digest is unchanged, since the card's SHA-256 is of the weights alone.
    """
    weights, card_path = checkpoint_paths(path)
    card = {**read_card(path), "calibration": block}
    if out is not None:
        out_weights, card_path = checkpoint_paths(out)
        if out_weights.resolve() != weights.resolve():
            import shutil

            out_weights.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(weights, out_weights)
        card["weights_file"] = out_weights.name
    _atomic_write_bytes(card_path, (json.dumps(card, indent=2, sort_keys=False) + "\n").encode())
    return card_path
