"""U-Net: any image size, depends on the noise level, deterministic, bf16 path."""

from __future__ import annotations

import pytest
import torch

from diffusion_core.networks import UNet, UNetConfig

SMALL = UNetConfig(base_channels=8, channel_mult=(1, 2, 2), attention_levels=(2,))


def _net(seed: int = 0, config: UNetConfig = SMALL) -> UNet:
    return UNet(config, generator=torch.Generator().manual_seed(seed)).eval()


@pytest.mark.parametrize("hw", [(16, 16), (17, 23), (3, 5), (1, 1)])
def test_any_size_keeps_shape_and_is_finite(hw: tuple[int, int]) -> None:
    x = torch.randn(2, 2, *hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = _net()(x, torch.zeros(2))
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_output_depends_on_noise_level() -> None:
    x = torch.randn(1, 2, 12, 12, generator=torch.Generator().manual_seed(2))
    net = _net()
    with torch.no_grad():
        a, b = net(x, torch.tensor([-1.0])), net(x, torch.tensor([1.0]))
    assert (a - b).abs().max() > 1e-3 * a.abs().max()


def test_same_seed_same_network_and_deterministic_forward() -> None:
    x = torch.randn(1, 2, 12, 12, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b, c = _net(5)(x, torch.zeros(1)), _net(5)(x, torch.zeros(1)), _net(6)(x, torch.zeros(1))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_bf16_autocast_close_to_float32() -> None:
    x = torch.randn(1, 2, 16, 16, generator=torch.Generator().manual_seed(4))
    net = _net()
    with torch.no_grad():
        ref = net(x, torch.zeros(1))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x, torch.zeros(1))
    assert low.dtype == torch.bfloat16
    rel = (low.float() - ref).norm() / ref.norm()
    assert 0 < rel < 0.05


def test_default_config_size_and_roundtrip() -> None:
    cfg = UNetConfig()
    n = sum(p.numel() for p in UNet(cfg).parameters())
    assert 1.5e6 < n < 4e6
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "kwargs",
    [{"attention_levels": (4,)}, {"base_channels": 6}, {"num_res_blocks": 0}, {"channel_mult": ()}],
)
def test_bad_config_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        UNetConfig(**kwargs)
