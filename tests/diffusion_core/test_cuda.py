"""The same computation on CUDA and on the CPU agrees (device follows the input tensors)."""

from __future__ import annotations

import pytest
import torch
from complex_checks import random_complex

from diffusion_core.denoiser import GaussianDenoiser
from diffusion_core.operators import sense_operator
from diffusion_core.reconstruct import ReconConfig, reconstruct

pytestmark = pytest.mark.gpu


def test_sense_operator_on_cuda_matches_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    maps = random_complex((4, 32, 24), g)
    mask = (torch.rand(32, 24, generator=g) > 0.5).float()
    x = random_complex((2, 32, 24), g)
    cpu = sense_operator(maps, mask).normal(x)
    gpu = sense_operator(maps.cuda(), mask.cuda()).normal(x.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)


def test_reconstruct_runs_on_cuda_and_stays_there() -> None:
    g = torch.Generator().manual_seed(1)
    maps = random_complex((4, 16, 16), g) / 2
    mask = torch.zeros(16, 16)
    mask[:, ::2] = 1
    mask[:, 6:10] = 1
    truth = random_complex((16, 16), g)
    kspace = sense_operator(maps, mask)(truth).cuda()
    prior = GaussianDenoiser.diagonal(
        torch.zeros(16, 16, dtype=torch.complex64, device="cuda"),
        torch.ones(16, 16, device="cuda"),
    )
    config = ReconConfig(sampler="dds", nfe=10, num_samples=2, noise_sigma=0.01)
    result = reconstruct(
        kspace, mask.cuda(), prior, config, maps=maps.cuda(),
        generator=torch.Generator(device="cuda").manual_seed(0),
    )  # fmt: skip
    assert result.mean.device.type == "cuda" and result.std.device.type == "cuda"
    residual = sense_operator(maps, mask)(result.mean.cpu()) - kspace.cpu()
    assert float(residual.norm() / kspace.norm()) < 0.1


def test_augmented_batch_on_cuda_matches_cpu() -> None:
    """The same seed gives the same strongly augmented batch on CUDA and on the CPU."""
    from diffusion_core.training.augment import AugmentConfig
    from diffusion_core.training.data import DataConfig, SliceBank, sample_batch

    g = torch.Generator().manual_seed(2)
    bank = SliceBank([torch.rand(40, 30, generator=g), torch.rand(50, 44, generator=g)], ["a", "b"])
    config = DataConfig(crop=32, augment=AugmentConfig(empty_prob=0.2))
    cpu = sample_batch(bank, 16, config, torch.Generator().manual_seed(3))
    gpu = sample_batch(bank, 16, config, torch.Generator().manual_seed(3), device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)
