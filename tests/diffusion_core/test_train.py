"""Training: the loss falls, a resumed run repeats the uninterrupted one, NaN stops, CLI writes a card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from training_data_files import ellipsoid_volume, write_nifti

from diffusion_core.checkpoint import load_checkpoint, sha256_of
from diffusion_core.denoiser import PreconditionedDenoiser
from diffusion_core.networks.unet import UNet, UNetConfig
from diffusion_core.training.data import DataConfig, SliceBank
from diffusion_core.training.train import (
    TrainConfig,
    TrainingDivergedError,
    _validation_set,
    train,
    validation_loss,
)


@pytest.fixture(autouse=True)
def _one_thread():  # tiny tensors: extra threads only add synchronisation (badly so on busy cores)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = UNetConfig(base_channels=8, channel_mult=(1, 2), attention_levels=(1,))
DATA = DataConfig(crop=16)


def _bank(n: int, seed: int) -> SliceBank:
    """Blurred random blobs of 20x20 pixels (normalised to a 99th percentile near 1)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand((n, 1, 5, 5), generator=g)
    images = torch.nn.functional.interpolate(noise, size=(20, 20), mode="bicubic")[:, 0].clamp(0)
    return SliceBank(list(images / images.amax(dim=(1, 2), keepdim=True)), ["s"] * n)


def _config(steps: int, **kw: object) -> TrainConfig:
    base = dict(
        steps=steps,
        batch_size=8,
        lr=2e-3,
        warmup_steps=5,
        validate_every=10,
        checkpoint_every=10,
        val_batches=2,
        ema_decay=0.9,
    )
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_training_lowers_the_validation_loss(tmp_path: Path) -> None:
    train_bank, val_bank = _bank(16, 0), _bank(8, 1)
    config = _config(60)
    fresh = PreconditionedDenoiser(UNet(TINY, generator=torch.Generator().manual_seed(0)))
    before = validation_loss(fresh, _validation_set(val_bank, DATA, config))
    result = train(train_bank, val_bank, tmp_path / "p", config, TINY, DATA, progress=False)
    assert result.steps == 60
    assert result.val_loss < 0.7 * before, (before, result.val_loss)
    card = json.loads((tmp_path / "p.json").read_text())
    assert card["training"]["steps"] == 60
    assert card["training"]["validation_loss"] == pytest.approx(result.val_loss)
    loaded = load_checkpoint(tmp_path / "p")
    for a, b in zip(loaded.parameters(), result.denoiser.parameters(), strict=True):
        assert torch.equal(a, b)  # the checkpoint holds the EMA weights


def test_resumed_run_repeats_the_uninterrupted_one(tmp_path: Path) -> None:
    banks = (_bank(16, 0), _bank(8, 1))
    straight = train(*banks, tmp_path / "a", _config(20), TINY, DATA, progress=False)
    train(*banks, tmp_path / "b", _config(10), TINY, DATA, progress=False)
    resumed = train(*banks, tmp_path / "b", _config(20), TINY, DATA, resume=True, progress=False)
    assert resumed.steps == 20
    for a, b in zip(straight.denoiser.parameters(), resumed.denoiser.parameters(), strict=True):
        assert torch.equal(a, b)
    assert resumed.val_loss == straight.val_loss


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    banks = (_bank(16, 0), _bank(8, 1))
    train(*banks, tmp_path / "p", _config(10), TINY, DATA, progress=False)
    digest = sha256_of(tmp_path / "p.safetensors")
    poisoned = SliceBank([torch.full((20, 20), float("nan"))] * 4, ["s"] * 4)
    with pytest.raises(TrainingDivergedError, match="non-finite"):
        train(
            poisoned, banks[1], tmp_path / "p", _config(30), TINY, DATA, resume=True, progress=False
        )
    assert sha256_of(tmp_path / "p.safetensors") == digest
    assert json.loads((tmp_path / "p.json").read_text())["training"]["steps"] == 10


def test_resume_refuses_another_architecture(tmp_path: Path) -> None:
    banks = (_bank(16, 0), _bank(8, 1))
    train(*banks, tmp_path / "p", _config(2), TINY, DATA, progress=False)
    other = UNetConfig(base_channels=12, channel_mult=(1, 2), attention_levels=(1,))
    with pytest.raises(ValueError, match="saved architecture"):
        train(*banks, tmp_path / "p", _config(4), other, DATA, resume=True, progress=False)


def test_fine_tuning_starts_from_the_checkpoint_and_records_it(tmp_path: Path) -> None:
    banks = (_bank(16, 0), _bank(8, 1))
    base = train(*banks, tmp_path / "base", _config(10), TINY, DATA, progress=False)
    # no steps left: the written checkpoint is the initial one, unchanged
    same = train(
        *banks, tmp_path / "a", _config(10), TINY, DATA, init=tmp_path / "base", progress=False
    )
    for a, b in zip(base.denoiser.parameters(), same.denoiser.parameters(), strict=True):
        assert torch.equal(a, b)
    assert same.val_loss == base.val_loss
    tuned = train(
        *banks, tmp_path / "b", _config(30), TINY, DATA, init=tmp_path / "base", progress=False
    )
    assert tuned.steps == 30
    fresh = train(*banks, tmp_path / "c", _config(20), TINY, DATA, progress=False)
    assert tuned.val_loss < fresh.val_loss  # 10 + 20 steps beat 20 from scratch
    card = json.loads((tmp_path / "b.json").read_text())
    assert card["training"]["steps"] == 30
    origin = card["initialised_from"]
    assert origin["sha256"] == sha256_of(tmp_path / "base.safetensors")
    assert origin["training"]["steps"] == 10
    train(*banks, tmp_path / "b", _config(32), TINY, DATA, resume=True, progress=False)
    assert json.loads((tmp_path / "b.json").read_text())["initialised_from"] == origin


def test_fine_tuning_refuses_another_architecture_or_resume(tmp_path: Path) -> None:
    from diffusion_core.checkpoint import CheckpointError

    banks = (_bank(16, 0), _bank(8, 1))
    train(*banks, tmp_path / "p", _config(2), TINY, DATA, progress=False)
    other = UNetConfig(base_channels=12, channel_mult=(1, 2), attention_levels=(1,))
    with pytest.raises(CheckpointError, match=r"p\.safetensors: architecture .*base_channels"):
        train(
            *banks,
            tmp_path / "q",
            _config(4),
            other,
            DATA,
            init=tmp_path / "p.safetensors",
            progress=False,
        )
    with pytest.raises(ValueError, match="at most one"):
        train(
            *banks,
            tmp_path / "p",
            _config(4),
            TINY,
            DATA,
            resume=True,
            init=tmp_path / "p",
            progress=False,
        )


def test_command_line_writes_checkpoint_and_model_card(tmp_path: Path) -> None:
    from diffusion_core.training.cli import main

    for name, radii in (("first", (14, 15, 13)), ("second", (13, 14, 15))):
        write_nifti(
            tmp_path / f"{name}.nii.gz", ellipsoid_volume((34, 36, 34), radii), (1.0, 1.0, 1.0)
        )
    out = tmp_path / "prior"
    argv = [
        "--data",
        str(tmp_path),
        "--out",
        str(out),
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--crop",
        "16",
        "--base-channels",
        "8",
        "--channel-mult",
        "1",
        "2",
        "--attention-levels",
        "1",
        "--validate-every",
        "2",
        "--no-progress",
        "--device",
        "cpu",
    ]
    main(argv)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["steps"] == 4
    assert card["training"]["data_config"]["augment"] is None  # off by default
    assert card["validation_subjects"] == ["second"]  # the last subject when no FLAIR is present
    splits = {d["file"]: (d["split"], d["license"]) for d in card["training_data"]}
    assert splits == {
        "first.nii.gz": ("train", "not stated (user data)"),
        "second.nii.gz": ("validation", "not stated (user data)"),
    }
    assert card["command"].startswith("python -m diffusion_core.training.train --data")
    assert load_checkpoint(out).net.config == UNetConfig(8, (1, 2), 1, (1,))


def test_command_line_augmentation_is_recorded_in_the_model_card(tmp_path: Path) -> None:
    from diffusion_core.training.augment import AugmentConfig
    from diffusion_core.training.cli import main

    for name in ("first", "second"):
        write_nifti(
            tmp_path / f"{name}.nii.gz", ellipsoid_volume((34, 36, 34), (14, 15, 13)), (1.0,) * 3
        )
    out = tmp_path / "prior"
    small = ["--steps", "2", "--batch-size", "2", "--crop", "16", "--base-channels", "8"]
    small += ["--channel-mult", "1", "2", "--attention-levels", "1", "--no-progress"]
    argv = ["--data", str(tmp_path), "--out", str(out), *small, "--device", "cpu"]
    with pytest.raises(SystemExit):  # an augmentation flag alone is a mistake, not a no-op
        main([*argv, "--zoom-range", "0.8", "1.2"])
    main([*argv, "--augment", "--zoom-range", "0.8", "1.2", "--empty-prob", "0.1"])
    augment = json.loads(out.with_suffix(".json").read_text())["training"]["data_config"]["augment"]
    assert augment["zoom_range"] == [0.8, 1.2] and augment["empty_prob"] == 0.1
    assert augment["bias_max"] == AugmentConfig().bias_max  # the rest at their defaults
