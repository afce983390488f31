"""Two CPU processes (gloo) train a few DistributedDataParallel steps and end with identical weights."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from diffusion_core.networks.unet import UNet, UNetConfig
from diffusion_core.training.data import DataConfig, SliceBank
from diffusion_core.training.train import TrainConfig, train

TINY = UNetConfig(base_channels=8, channel_mult=(1, 2), attention_levels=(1,))


def _bank(seed: int) -> SliceBank:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand((6, 20, 20), generator=g)
    return SliceBank(list(images), ["s"] * 6)


def _worker(rank: int, world: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world
    )
    try:
        config = TrainConfig(steps=4, batch_size=2, warmup_steps=1, lr=1e-2, val_batches=1)
        result = train(
            _bank(rank),  # each rank sees other data: only gradient averaging keeps them equal
            _bank(99),
            Path(folder) / "prior",
            config,
            TINY,
            DataConfig(crop=16),
            progress=False,
        )
        raw = result.denoiser.net  # EMA weights; the raw ones are saved in the training state
        save_file(
            {k: v.contiguous() for k, v in raw.state_dict().items()},
            f"{folder}/rank{rank}.safetensors",
        )
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_end_with_identical_weights(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    first = load_file(str(tmp_path / "rank0.safetensors"))
    second = load_file(str(tmp_path / "rank1.safetensors"))
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    initial = UNet(TINY, generator=torch.Generator().manual_seed(0)).state_dict()
    moved = sum(float((initial[k] - first[k]).abs().sum()) for k in first)
    assert moved > 0  # the steps changed the weights
    assert (tmp_path / "prior.state.safetensors").is_file()  # rank 0 saved the training state
