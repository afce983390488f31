"""The prior shipped with the package: ``default.safetensors`` + ``default.json`` (model card).

It is used when no checkpoint is named. Its card records the architecture, training data and
licenses, steps, validation loss and the training command; the loader verifies its SHA-256.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusion_core.denoiser import PreconditionedDenoiser

DEFAULT_PRIOR_PATH = Path(__file__).with_name("default.safetensors")


def prior_path(name: str | Path) -> Path:
    """``default`` names the shipped prior; anything else is a checkpoint path."""
    return DEFAULT_PRIOR_PATH if str(name) == "default" else Path(name)


def load_default_prior(
    device: str | torch.device = "cpu", *, autocast_bf16: bool = False
) -> PreconditionedDenoiser:
    """The shipped prior as a :class:`~diffusion_core.denoiser.PreconditionedDenoiser` on ``device``
    (``autocast_bf16``: its network under bfloat16 autocast)."""
    from diffusion_core.checkpoint import load_checkpoint

    return load_checkpoint(DEFAULT_PRIOR_PATH, device=device, autocast_bf16=autocast_bf16)
