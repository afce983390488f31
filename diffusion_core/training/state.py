"""Resumable training state as safetensors + JSON (no pickle).

``<stem>.state.safetensors`` holds ``model.*`` (raw weights), ``ema.*`` (EMA weights) and
``optim.<param index>.<name>`` (AdamW moments and step counts); ``<stem>.state.json`` holds the
step, the optimizer's param groups and the configs. Randomness needs no saved state: the
generators of step k are seeded from (seed, rank, k) (see :func:`step_seed`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def step_seed(seed: int, rank: int, step: int) -> int:
    """A well-mixed 63-bit seed for the random numbers of ``step`` on ``rank``."""
    state = np.random.SeedSequence([seed, rank, step]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & ((1 << 63) - 1)


def state_paths(stem: Path) -> tuple[Path, Path]:
    """(tensors, json) paths of the training state of checkpoint stem ``stem``."""
    return stem.with_name(stem.name + ".state.safetensors"), stem.with_name(
        stem.name + ".state.json"
    )


@dataclass
class TrainingState:
    """What a resumed run needs besides the data and configs."""

    step: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    info: dict[str, Any]


def save_training_state(
    stem: Path,
    step: int,
    model: nn.Module,
    ema: nn.Module,
    optimizer: torch.optim.Optimizer,
    info: dict[str, Any],
) -> None:
    """Write the training state beside checkpoint stem ``stem`` (atomically: temp file + rename)."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"model.{k}": v for k, v in model.state_dict().items()})
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    opt = optimizer.state_dict()
    for index, entries in opt["state"].items():
        for name, value in entries.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"step": step, "param_groups": opt["param_groups"], "info": info}
    tensor_path, json_path = state_paths(stem)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    for path, data in (
        (tensor_path, save(tensors)),
        (json_path, json.dumps(meta, indent=1).encode()),
    ):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def load_training_state(stem: Path) -> TrainingState:
    """Read what :func:`save_training_state` wrote; ``FileNotFoundError`` naming the file if absent."""
    from safetensors.torch import load_file

    tensor_path, json_path = state_paths(stem)
    for path in (tensor_path, json_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no training state to resume from")
    meta = json.loads(json_path.read_text())
    tensors = load_file(str(tensor_path))
    model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    ema = {k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")}
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer = {"state": state, "param_groups": groups}
    return TrainingState(int(meta["step"]), model, ema, optimizer, meta.get("info", {}))
