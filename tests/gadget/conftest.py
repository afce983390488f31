"""Fixtures for the gadget tests: ISMRMRD files made by ismrmrd-tools and a small prior."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gadget_helpers import shepp_logan


@pytest.fixture(scope="session")
def accelerated_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """R = 2 with 12 ACS lines and noise calibration; the tool alternates the pattern over 2 repetitions."""
    return shepp_logan(tmp_path_factory.mktemp("sl") / "accelerated.h5", acceleration=2, noise=0.02)


@pytest.fixture(scope="session")
def full_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same phantom fully sampled and noise-free: the reference."""
    return shepp_logan(tmp_path_factory.mktemp("sl") / "full.h5", acceleration=1, noise=0.0)


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small random-weight prior saved with the project's checkpoint format (for plumbing tests)."""
    from diffusion_core.checkpoint import save_checkpoint
    from diffusion_core.denoiser import PreconditionedDenoiser
    from diffusion_core.networks.unet import UNet, UNetConfig

    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=8, channel_mult=(1, 2), attention_levels=()))
    stem = tmp_path_factory.mktemp("prior") / "small"
    save_checkpoint(stem, PreconditionedDenoiser(net), {"purpose": "tests (random weights)"})
    return str(stem)


@pytest.fixture(scope="session")
def fast_properties(small_checkpoint: str) -> dict[str, str]:
    """Gadget properties for quick plumbing runs (few NFE, CPU, the small prior)."""
    return {
        "sampler": "dds",
        "nfe": "2",
        "num_samples": "2",
        "cg_iters": "2",
        "checkpoint": small_checkpoint,
        "device": "cpu",
    }
