"""Command line for training a prior; works alone or under ``torchrun`` (one process per GPU).

python -m diffusion_core.training.train --data ../shared/data/train_volumes --out prior --steps 20000
torchrun --nproc_per_node 4 -m diffusion_core.training.train --data DIR --out prior --steps 20000
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from diffusion_core.networks.unet import UNetConfig
from diffusion_core.priors import prior_path
from diffusion_core.training.augment import AugmentConfig
from diffusion_core.training.data import (
    DataConfig,
    find_sources,
    load_slice_bank,
    split_by_subject,
    subject_of,
)
from diffusion_core.training.train import TrainConfig, TrainingDivergedError, train

log = logging.getLogger("diffusion_core.training")

# Licenses of the files in ../shared/data/train_volumes (see that folder's README.md).
KNOWN_LICENSES = {
    "niivue_chris_t1.nii.gz": "BSD-2-Clause (niivue project)",
    "niivue_otsu_t1.nii.gz": "BSD-2-Clause (niivue project; scan provenance not documented)",
    "niivue_FLAIR.nii.gz": "BSD-2-Clause (niivue project; scan provenance not documented)",
    "niivue_fs_norm.mgz": "BSD-2-Clause (niivue project; scan provenance not documented)",
    "colin27_ch2_mricron.nii.gz": "BSD-3-Clause (Debian mricron-data)",
    "colin27_ch2better_0.5mm_mricron.nii.gz": "BSD-3-Clause (Debian mricron-data)",
    "nilearn_mni152_2009a_t1.nii.gz": "MNI ICBM152 permissive notice (PyPI nilearn)",
}
DEFAULT_VALIDATION_SUBJECT = "niivue_FLAIR"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m diffusion_core.training", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        help="folders or files: NIfTI/MGZ volumes, ISMRMRD or fastMRI HDF5",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="checkpoint stem: writes STEM.safetensors, STEM.json, STEM.state.*",
    )
    p.add_argument("--steps", type=int, default=TrainConfig.steps, help="total optimiser steps")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="per process")
    p.add_argument("--crop", type=int, default=DataConfig.crop)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--ema-decay", type=float, default=TrainConfig.ema_decay)
    p.add_argument(
        "--validation-subject",
        nargs="+",
        default=None,
        help=f"held-out subjects (default {DEFAULT_VALIDATION_SUBJECT} if present, else the last)",
    )
    p.add_argument("--base-channels", type=int, default=UNetConfig.base_channels)
    p.add_argument(
        "--patch",
        type=int,
        default=0,
        help="train a patch prior (PaDIS): the network sees PATCH x PATCH tiles of each crop with "
        "their positions, tiled afresh at every step (0: whole images, the default)",
    )
    p.add_argument("--channel-mult", type=int, nargs="+", default=list(UNetConfig.channel_mult))
    p.add_argument(
        "--attention-levels", type=int, nargs="*", default=list(UNetConfig.attention_levels)
    )
    p.add_argument("--validate-every", type=int, default=TrainConfig.validate_every)
    p.add_argument("--checkpoint-every", type=int, default=TrainConfig.checkpoint_every)
    p.add_argument(
        "--max-minutes", type=float, default=math.inf, help="stop (and save) after this wall time"
    )
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the network")
    p.add_argument("--compile", action="store_true", help="torch.compile the network for training")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--resume", action="store_true", help="continue from STEM.state.*")
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="fine-tune: start from this checkpoint's weights (e.g. the shipped prior, 'default')",
    )
    p.add_argument("--no-progress", action="store_true")
    _add_augment_arguments(p)
    return p.parse_args(argv)


# --flag -> (AugmentConfig field, nargs); each overrides the field's default under --augment.
AUGMENT_FLAGS = {
    "--zoom-range": ("zoom_range", 2),
    "--aspect-range": ("aspect_range", 2),
    "--rotation-deg": ("rotation_deg", None),
    "--shift": ("shift", None),
    "--contrast-prob": ("contrast_prob", None),
    "--contrast-std": ("contrast_std", None),
    "--bias-prob": ("bias_prob", None),
    "--bias-max": ("bias_max", None),
    "--empty-prob": ("empty_prob", None),
    "--empty-noise": ("empty_noise", 2),
    "--phase-weights": ("phase_weights", 3),
}


def _add_augment_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group(
        "strong augmentation (diffusion_core.training.augment; off unless --augment)"
    )
    group.add_argument(
        "--augment",
        action="store_true",
        help="zoom / aspect / rotation / shift of whole slices, monotone contrast curves, bias "
        "fields, empty noisy backgrounds, smooth / ramp / near-constant phase",
    )
    defaults = AugmentConfig()
    for flag, (name, nargs) in AUGMENT_FLAGS.items():
        group.add_argument(
            flag, type=float, nargs=nargs, default=None, help=f"default {getattr(defaults, name)}"
        )


def augment_config(args: argparse.Namespace) -> AugmentConfig | None:
    """The AugmentConfig of ``--augment`` and its overrides; None without ``--augment``."""
    given = {
        name: tuple(value) if isinstance(value, list) else value
        for flag, (name, _) in AUGMENT_FLAGS.items()
        if (value := getattr(args, name)) is not None
    }
    if not args.augment:
        if given:
            flags = [f for f, (n, _) in AUGMENT_FLAGS.items() if n in given]
            raise ValueError(f"{', '.join(flags)}: expected together with --augment")
        return None
    return AugmentConfig(**given)  # type: ignore[arg-type]


def _training_data_card(sources: list[Path], validation: set[str]) -> list[dict[str, Any]]:
    return [
        {
            "file": path.name,
            "subject": subject_of(path),
            "split": "validation" if subject_of(path) in validation else "train",
            "license": KNOWN_LICENSES.get(path.name, "not stated (user data)"),
        }
        for path in sources
    ]


def _command_line(argv: list[str]) -> str:
    """The command as typed (python or torchrun), for the model card."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = ["torchrun", f"--nproc_per_node={world}"] if world > 1 else ["python"]
    words = [*launcher, "-m", "diffusion_core.training.train", *argv]
    return " ".join(shlex.quote(str(w)) for w in words)


def _setup_distributed(requested: str | None) -> torch.device:
    """Initialise the process group under torchrun; return this process's device."""
    use_cuda = (requested or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    device = _setup_distributed(args.device)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        data_config = DataConfig(crop=args.crop, augment=augment_config(args))
        config = TrainConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            ema_decay=args.ema_decay,
            validate_every=args.validate_every,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
            bf16=args.bf16,
            compile=args.compile,
            max_seconds=args.max_minutes * 60,
            patch=args.patch,
        )
        net_config = UNetConfig(
            base_channels=args.base_channels,
            channel_mult=tuple(args.channel_mult),
            attention_levels=tuple(args.attention_levels),
            **({"in_channels": 4, "out_channels": 2} if args.patch else {}),
        )
        bank = load_slice_bank(args.data, data_config)
        subjects = bank.subject_names
        validation = args.validation_subject or [
            DEFAULT_VALIDATION_SUBJECT if DEFAULT_VALIDATION_SUBJECT in subjects else subjects[-1]
        ]
        if len(subjects) == 1:
            raise ValueError(
                f"training data: only one subject ({subjects[0]}); need another to hold out"
            )
        train_bank, val_bank = split_by_subject(bank, validation)
        log.info(
            "%d training slices, %d validation slices (%s)",
            len(train_bank),
            len(val_bank),
            validation,
        )
        card = {
            "training_data": _training_data_card(find_sources(args.data), set(validation)),
            "validation_subjects": list(validation),
            "command": _command_line(argv if argv is not None else sys.argv[1:]),
        }
        result = train(
            train_bank,
            val_bank,
            args.out,
            config,
            net_config,
            data_config,
            device=device,
            card=card,
            resume=args.resume,
            init=None if args.init is None else prior_path(args.init),
            progress=not args.no_progress,
        )
        if rank == 0:
            log.info(
                "wrote %s.safetensors: %d steps, validation loss %.4f, %.0f s",
                args.out,
                result.steps,
                result.val_loss,
                result.seconds,
            )
    except (TrainingDivergedError, ValueError, FileNotFoundError) as err:
        log.error("%s", err)
        raise SystemExit(1) from err
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
