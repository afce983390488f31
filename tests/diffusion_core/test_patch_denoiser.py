"""The patch prior (PaDIS): exact tiling with positions, a shifting tiling, checkpoints, training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from diffusion_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from diffusion_core.denoiser import PatchDenoiser, PreconditionedDenoiser
from diffusion_core.networks.unet import UNet, UNetConfig
from diffusion_core.schedules import karras
from diffusion_core.training.data import DataConfig, SliceBank
from diffusion_core.training.train import TrainConfig, _validation_set, train, validation_loss

PATCH_NET = UNetConfig(
    base_channels=8, channel_mult=(1, 2), attention_levels=(), in_channels=4, out_channels=2
)


class _Positions(nn.Module):
    """Returns the position channels: the untiled output is the coordinate ramps."""

    def forward(self, t: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        return t[:, 2:4]


class _Pointwise(nn.Module):
    """A 1 x 1 convolution of the image channels: the same at every pixel, blind to positions."""

    def __init__(self, take_positions: bool) -> None:
        super().__init__()
        self.take_positions = take_positions
        self.conv = nn.Conv2d(2, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[0.7, -0.2], [0.3, 0.9]])[:, :, None, None])
            self.conv.bias.copy_(torch.tensor([0.05, -0.1]))

    def forward(self, t: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        x = t[:, :2] if self.take_positions else t
        return self.conv(x) * (1 + c_noise[:, None, None, None])


@pytest.mark.parametrize("shape", [(37, 50), (32, 32), (5, 70)])
@pytest.mark.parametrize("offset", [(0, 0), (5, 11), (15, 15)])
def test_tiles_put_back_exactly_with_each_pixel_s_position(shape, offset) -> None:
    h, w = shape
    d = PatchDenoiser(_Positions(), 16)
    x = torch.randn(3, h, w, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    tiles, layout = d.tiles(x, offset)
    assert tiles.shape[1:] == (4, 16, 16)
    assert tiles.shape[0] == 3 * -(-h // 16) * -(-w // 16)  # a shift costs no extra tiles
    assert torch.equal(d.untile(tiles[:, :2], layout, h, w), x)
    pos = d.untile(tiles[:, 2:4], layout, h, w)
    ys = (torch.arange(h) + 0.5) * 2 / h - 1
    xs = (torch.arange(w) + 0.5) * 2 / w - 1
    torch.testing.assert_close(pos.real, ys[:, None].expand(3, h, w), atol=1e-6, rtol=0)
    torch.testing.assert_close(pos.imag, xs[None, :].expand(3, h, w), atol=1e-6, rtol=0)


def test_a_pointwise_network_gives_the_whole_image_result_whatever_the_tiling() -> None:
    whole = PreconditionedDenoiser(_Pointwise(take_positions=False))
    patches = PatchDenoiser(_Pointwise(take_positions=True), 8)
    x = torch.randn(2, 21, 30, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    for sigma in (0.01, 0.3, 5.0):
        torch.testing.assert_close(patches(x, sigma), whole(x, sigma), atol=1e-5, rtol=1e-5)
    sigmas = torch.tensor([0.02, 0.7])  # one level per image
    torch.testing.assert_close(patches(x, sigmas), whole(x, sigmas), atol=1e-5, rtol=1e-5)


def test_the_tiling_moves_between_sampler_steps_and_repeats_for_the_same_level() -> None:
    d = PatchDenoiser(_Positions(), 32)
    levels = karras(25)[:-1]
    offsets = [d._offset(torch.tensor([float(s)])) for s in levels]
    assert len(set(offsets)) >= 20  # 25 steps, 1024 possible offsets
    assert all(0 <= oy < 32 and 0 <= ox < 32 for oy, ox in offsets)
    assert d._offset(torch.tensor([0.5])) == d._offset(torch.tensor([0.5]))


def test_patch_checkpoint_round_trip_and_bad_cards(tmp_path: Path) -> None:
    net = UNet(PATCH_NET, generator=torch.Generator().manual_seed(0))
    d = PatchDenoiser(net, 16)
    save_checkpoint(tmp_path / "p", d, {"training_data": []})
    card = json.loads((tmp_path / "p.json").read_text())
    assert card["denoiser"] == {"class": "PatchDenoiser", "sigma_data": 0.5, "patch": 16}
    assert card["architecture"]["config"]["in_channels"] == 4
    loaded = load_checkpoint(tmp_path / "p")
    assert isinstance(loaded, PatchDenoiser) and loaded.patch == 16
    x = torch.randn(1, 24, 40, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 0.4), d.eval()(x, 0.4))
    for block, message in (
        ({"class": "PatchDenoiser", "sigma_data": 0.5}, "needs an integer 'patch' >= 4, got None"),
        ({"class": "Mystery", "sigma_data": 0.5}, "unknown denoiser class 'Mystery'"),
    ):
        (tmp_path / "p.json").write_text(json.dumps({**card, "denoiser": block}))
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / "p")


def test_whole_image_cards_are_unchanged_by_the_output_channels_field() -> None:
    card = json.loads(Path("diffusion_core/priors/default.json").read_text())
    config = UNetConfig.from_dict(card["architecture"]["config"])
    assert config.outputs == 2 and config.to_dict() == card["architecture"]["config"]
    assert UNetConfig(in_channels=4, out_channels=2).to_dict()["out_channels"] == 2


def _bank(n: int, seed: int) -> SliceBank:
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand((n, 1, 5, 5), generator=g)
    images = nn.functional.interpolate(noise, size=(20, 20), mode="bicubic")[:, 0].clamp(0)
    return SliceBank(list(images / images.amax(dim=(1, 2), keepdim=True)), ["s"] * n)


def test_a_patch_prior_trains_and_its_card_says_so(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = TrainConfig(
        steps=60, batch_size=8, lr=2e-3, warmup_steps=5, validate_every=30,
        checkpoint_every=30, val_batches=2, ema_decay=0.9, patch=8,
    )  # fmt: skip
    data = DataConfig(crop=16)
    train_bank, val_bank = _bank(16, 0), _bank(8, 1)
    fresh = PatchDenoiser(UNet(PATCH_NET, generator=torch.Generator().manual_seed(0)), 8)
    before = validation_loss(fresh, _validation_set(val_bank, data, config))
    result = train(train_bank, val_bank, tmp_path / "p", config, PATCH_NET, data, progress=False)
    assert isinstance(result.denoiser, PatchDenoiser)
    assert result.val_loss < 0.7 * before, (before, result.val_loss)
    assert json.loads((tmp_path / "p.json").read_text())["denoiser"]["patch"] == 8
    with pytest.raises(ValueError, match="patch prior: expected a network with 4 inputs"):
        train(train_bank, val_bank, tmp_path / "q", config, UNetConfig(base_channels=8), data)
