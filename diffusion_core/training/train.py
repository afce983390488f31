"""Denoising score matching for the prior (EDM loss weighting), with EMA, resume and DDP.

One step: a batch of augmented complex crops x0, sigma ~ exp(N(P_mean, P_std^2)), noise
N(0, sigma^2) per real channel, loss ``lambda(sigma) * mean |D(x0 + n, sigma) - x0|^2`` with
``lambda = 1 / c_out^2`` of :class:`~diffusion_core.denoiser.PreconditionedDenoiser` (Karras et
al. 2022). Under ``torchrun`` the process group is set up by the CLI and gradients are averaged by
DistributedDataParallel; every rank draws its own batches (per-rank batch size). The random numbers
of step k on rank r come from generators seeded with (seed, r, k), so a resumed run repeats the
uninterrupted one exactly. A non-finite loss stops training at the next check (every
``SYNC_EVERY`` steps, and always before a checkpoint is written), so the last checkpoint written
stays as it was.

Run ``python -m diffusion_core.training.train --help`` for the command line.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from diffusion_core.checkpoint import (
    CheckpointError,
    checkpoint_paths,
    load_checkpoint,
    read_card,
    save_checkpoint,
)
from diffusion_core.denoiser import PatchDenoiser, PreconditionedDenoiser
from diffusion_core.networks.unet import UNet, UNetConfig
from diffusion_core.training.data import DataConfig, SliceBank, sample_batch
from diffusion_core.training.state import (
    load_training_state,
    save_training_state,
    state_paths,
    step_seed,
)

log = logging.getLogger(__name__)

SYNC_EVERY = 10  # steps between loss checks (always also before validating or saving)


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``batch_size`` is per process (global = world size x batch_size)."""

    steps: int = 10_000
    batch_size: int = 16
    lr: float = 2e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_data: float = 0.5
    validate_every: int = 500
    checkpoint_every: int = 500
    val_batches: int = 4
    seed: int = 0
    bf16: bool = False
    compile: bool = False
    max_seconds: float = math.inf
    patch: int = 0  # > 0: a patch prior (PatchDenoiser) on tiles of this size; 0: whole images

    def __post_init__(self) -> None:
        positive = (
            "steps",
            "batch_size",
            "lr",
            "validate_every",
            "checkpoint_every",
            "val_batches",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name}: expected > 0, got {getattr(self, name)}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"TrainConfig.ema_decay: expected in [0, 1), got {self.ema_decay}")
        if self.p_std <= 0 or self.sigma_data <= 0:
            raise ValueError("TrainConfig.p_std and sigma_data: expected > 0")
        if self.patch and self.patch < 4:
            raise ValueError(
                f"TrainConfig.patch: expected 0 (whole images) or >= 4, got {self.patch}"
            )


@dataclass
class TrainResult:
    """What a run ended with; ``denoiser`` carries the EMA weights."""

    steps: int
    train_loss: float
    val_loss: float
    seconds: float
    denoiser: PreconditionedDenoiser


def edm_loss(
    denoiser: nn.Module,
    weight_of: PreconditionedDenoiser,
    x0: torch.Tensor,
    sigma: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Weighted denoising loss: mean over the batch of lambda(sigma) |D(x0 + sigma n) - x0|^2.

    x0, noise (B, H, W) complex (noise has unit variance per real channel); sigma (B,).
    ``denoiser`` may be a DDP wrapper of ``weight_of``.
    """
    d = denoiser(x0 + sigma[:, None, None] * noise, sigma)
    err = torch.view_as_real(d - x0).square().mean(dim=(1, 2, 3))
    return (weight_of.loss_weight(sigma) * err).mean()


def draw_noise(
    x0: torch.Tensor, config: TrainConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma (B,), unit complex noise like x0), drawn on x0's device from ``generator`` (there too)."""
    g, dev = generator, x0.device
    sigma = (torch.randn(x0.shape[0], generator=g, device=dev) * config.p_std + config.p_mean).exp()
    noise = torch.complex(
        torch.randn(x0.shape, generator=g, device=dev),
        torch.randn(x0.shape, generator=g, device=dev),
    )
    return sigma, noise


def _validation_set(
    bank: SliceBank, data: DataConfig, config: TrainConfig
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Fixed (x0, sigma, noise) batches: the same crops and noise at every validation.

    Made without ``data.augment``: the validation loss of priors trained with and without the
    strong augmentation is measured on the same kind of crops.
    """
    data = replace(data, augment=None)
    seed = step_seed(config.seed, -1 % 2**31, 0)
    g = torch.Generator().manual_seed(seed)
    g_device = torch.Generator(bank.images[0].device).manual_seed(seed)
    out = []
    for _ in range(config.val_batches):
        x0 = sample_batch(bank, config.batch_size, data, g)
        out.append((x0, *draw_noise(x0, config, g_device)))
    return out


@torch.no_grad()
def validation_loss(denoiser: PreconditionedDenoiser, batches: list) -> float:
    """Mean EDM loss of ``denoiser`` over fixed validation batches."""
    losses = [float(edm_loss(denoiser, denoiser, *b)) for b in batches]
    return sum(losses) / len(losses)


@torch.no_grad()
def make_denoiser(net: nn.Module, config: TrainConfig) -> PreconditionedDenoiser:
    """The preconditioned denoiser around ``net`` that ``config`` asks for (whole-image or patch)."""
    if config.patch:
        return PatchDenoiser(net, config.patch, config.sigma_data, config.bf16)
    return PreconditionedDenoiser(net, sigma_data=config.sigma_data, autocast_bf16=config.bf16)


def _update_ema(ema: nn.Module, model: nn.Module, step: int, decay: float) -> None:
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - d)


def _initialise_from(
    path: Path, net: nn.Module, ema: nn.Module, net_config: UNetConfig
) -> dict[str, Any]:
    """Load checkpoint ``path`` (verified) into ``net`` and ``ema``; return its model card."""
    card = read_card(path)
    saved = UNetConfig.from_dict(card["architecture"]["config"])
    if saved != net_config:
        raise CheckpointError(
            f"{path}: architecture {saved.to_dict()} differs from the requested {net_config.to_dict()}"
        )
    weights = load_checkpoint(path).net.state_dict()
    net.load_state_dict(weights)
    ema.load_state_dict(weights)
    log.info("initialised from %s (%s steps)", path, card.get("training", {}).get("steps", "?"))
    return card


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(
    train_bank: SliceBank,
    val_bank: SliceBank,
    out: Path,
    config: TrainConfig | None = None,
    net_config: UNetConfig | None = None,
    data_config: DataConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    card: dict[str, Any] | None = None,
    resume: bool = False,
    init: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume) a prior; write ``<out>.safetensors/.json`` (EMA) and the training state.

    ``card`` is merged into the model card (training data, licenses, command). With ``resume``,
    ``<out>.state.*`` must exist and training continues from its step up to ``config.steps``.
    With ``init`` (a checkpoint, e.g. the shipped prior), the network and its EMA start from that
    checkpoint's weights (verified; its architecture must be ``net_config``), the step count and
    seconds continue from its card and AdamW starts afresh with warm-up: fine-tuning.
    Raises :class:`TrainingDivergedError` on a non-finite loss (nothing is saved after it).
    """
    from tqdm import tqdm

    config = config or TrainConfig()
    net_config = net_config or UNetConfig()
    data_config = data_config or DataConfig()
    device = torch.device(device)
    rank, world = _world()
    out = Path(out)
    start = time.monotonic()
    if config.patch and (net_config.in_channels, net_config.outputs) != (4, 2):
        raise ValueError(
            f"patch prior: expected a network with 4 inputs (real, imaginary, y, x) and 2 outputs, "
            f"got {net_config.in_channels} and {net_config.outputs}"
        )
    net = UNet(net_config, generator=torch.Generator().manual_seed(config.seed)).to(device)
    model = make_denoiser(net, config)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.99)
    )
    step, val_loss, elapsed_before, warm_start = 0, math.nan, 0.0, 0
    if resume and init is not None:
        raise ValueError(
            "resume and init: expected at most one (a resumed run has its own weights)"
        )
    if init is not None:
        origin = _initialise_from(Path(init), net, ema.net, net_config)
        history = origin.get("training", {})
        step = warm_start = int(history.get("steps", 0))
        elapsed_before = float(history.get("seconds", 0.0))
        card = {
            **(card or {}),
            "initialised_from": {
                "file": Path(init).name,
                "sha256": origin["sha256"],
                "training": history,
                "training_data": origin.get("training_data", []),
            },
        }
    if resume:
        state = load_training_state(out)
        _, card_path = checkpoint_paths(out)
        if card_path.is_file() and "initialised_from" in (previous := read_card(card_path)):
            # a resumed fine-tuning run keeps the record of where it started
            card = {**(card or {}), "initialised_from": previous["initialised_from"]}
        saved_arch = state.info.get("net_config")
        if saved_arch is not None and saved_arch != net_config.to_dict():
            raise ValueError(
                f"{state_paths(out)[1]}: saved architecture {saved_arch} differs from {net_config.to_dict()}"
            )
        net.load_state_dict(state.model)
        ema.net.load_state_dict(state.ema)
        if state.optimizer["state"]:
            optimizer.load_state_dict(state.optimizer)
        else:
            log.warning("%s: no optimizer moments saved; AdamW restarts with warm-up", out)
            warm_start = state.step
        step, val_loss = state.step, float(state.info.get("val_loss", math.nan))
        elapsed_before = float(state.info.get("seconds", 0.0))
        log.info("resumed %s at step %d", out, step)
    # The training forward may run a compiled copy of the network (same parameters).
    train_model = model
    if config.compile:
        train_model = make_denoiser(torch.compile(net), config)  # type: ignore[arg-type]
    ddp_train: nn.Module = train_model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        ddp_train = nn.parallel.DistributedDataParallel(train_model, device_ids=ids)
    val_bank = val_bank.to(device)  # the training bank stays where it is (crops are cut there)
    val_set = _validation_set(val_bank, data_config, config) if len(val_bank) else []
    generator = torch.Generator()  # crops and augmentation (CPU)
    noise_generator = torch.Generator(device)  # sigma and noise (on the device)
    recent: list[float] = []
    bar = tqdm(
        total=config.steps,
        initial=step,
        disable=not progress or rank != 0,
        desc="train",
        leave=False,
    )

    def info() -> dict[str, Any]:
        return {
            "val_loss": val_loss,
            "train_loss": sum(recent) / max(len(recent), 1),
            "seconds": elapsed_before + time.monotonic() - start,
            "net_config": net_config.to_dict(),
            "train_config": {
                k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                for k, v in asdict(config).items()
            },
            "data_config": asdict(data_config),
            "world_size": world,
        }

    def save() -> None:
        if rank == 0:
            save_training_state(out, step, net, ema.net, optimizer, info())
            summary = info()
            full_card = {
                **(card or {}),
                "training": {
                    "steps": step,
                    "validation_loss": summary["val_loss"],
                    "train_loss_recent": summary["train_loss"],
                    "seconds": round(summary["seconds"], 1),
                    "device": str(device)
                    if device.type == "cpu"
                    else torch.cuda.get_device_name(device),
                    "world_size": world,
                    "train_config": summary["train_config"],
                    "data_config": summary["data_config"],
                },
            }
            save_checkpoint(out, ema, full_card)
        if world > 1:
            dist.barrier()

    model.train()
    pending: list[torch.Tensor] = []  # losses since the last check, still on the device
    while step < config.steps:
        seed = step_seed(config.seed, rank, step)
        generator.manual_seed(seed)
        noise_generator.manual_seed(seed ^ 1)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * min(
                1.0, (step - warm_start + 1) / max(config.warmup_steps, 1)
            )
        x0 = sample_batch(train_bank, config.batch_size, data_config, generator, device)
        sigma, noise = draw_noise(x0, config, noise_generator)
        loss = edm_loss(ddp_train, train_model, x0, sigma, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        optimizer.step()
        _update_ema(ema, model, step, config.ema_decay)
        pending.append(loss.detach().float())
        step += 1
        bar.update(1)
        validate = step % config.validate_every == 0 and bool(val_set)
        checkpoint = step % config.checkpoint_every == 0 and step < config.steps
        if step % SYNC_EVERY and not (validate or checkpoint or step == config.steps):
            continue
        # Check point: every rank agrees on the mean loss and on the time limit.
        losses = torch.stack(pending)
        pending = []
        overtime = time.monotonic() - start > config.max_seconds
        flags = torch.stack(
            [
                losses.sum(),
                torch.isfinite(losses).all().float(),
                torch.tensor(float(overtime), device=device),
            ]
        )
        if world > 1:
            dist.all_reduce(flags)
        total, finite_ranks, overtime_ranks = flags.tolist()
        if finite_ranks < world:
            bar.close()
            raise TrainingDivergedError(
                f"loss became non-finite between steps {step - len(losses)} and {step}; training "
                f"stopped, the last checkpoint {out}.safetensors (if any) was kept"
            )
        recent = [*recent[-9:], total / (world * len(losses))]
        if validate:
            val_loss = validation_loss(ema, val_set)
            log.info(
                "step %d: train loss %.4f, validation loss %.4f",
                step,
                info()["train_loss"],
                val_loss,
            )
        bar.set_postfix(loss=f"{info()['train_loss']:.4f}", val=f"{val_loss:.4f}", refresh=False)
        if overtime_ranks > 0:
            log.info("time limit of %.0f s reached at step %d", config.max_seconds, step)
            break
        if checkpoint:
            save()
    bar.close()
    if val_set:
        val_loss = validation_loss(ema, val_set)
    save()
    seconds = elapsed_before + time.monotonic() - start
    log.info("finished at step %d: validation loss %.4f (%.0f s)", step, val_loss, seconds)
    return TrainResult(step, info()["train_loss"], val_loss, seconds, ema)


if __name__ == "__main__":
    from diffusion_core.training.cli import main

    main()
