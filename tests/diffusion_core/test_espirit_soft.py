"""The experimental soft-SENSE weighting of ESPIRiT maps (``espirit_maps(soft=...)``)."""

import pytest
import torch
from test_espirit import simulated_case

from diffusion_core.espirit import espirit_maps, soft_weights
from diffusion_core.masks import random_columns_mask


def test_soft_weights_ramp():
    value = torch.tensor([0.0, 0.8, 0.80001, 0.85, 0.9, 0.95, 0.99, 1.0])
    w = soft_weights(value, 0.8, 0.9)
    # zero where the hard crop is zero, positive wherever it keeps the pixel, one from the top on
    assert w[:2].tolist() == [0.0, 0.0]
    assert bool((w[2:] > 0).all()) and w[4:].tolist() == [1.0] * 4
    # smoothstep: the midpoint of the ramp is 1/2, a quarter of the way 0.15625
    torch.testing.assert_close(w[3], torch.tensor(0.5))
    torch.testing.assert_close(soft_weights(torch.tensor(0.825), 0.8, 0.9), torch.tensor(0.15625))
    assert bool((w.diff() >= 0).all())
    with pytest.raises(ValueError, match="soft"):
        soft_weights(value, 0.8, 0.8)


def test_soft_maps_are_the_hard_maps_weighted_on_the_same_support():
    kspace, _, _ = simulated_case(ny=64, nx=56, noise=1e-2)
    mask = random_columns_mask(kspace.shape[-2:], 4, 12, seed=0)
    hard = espirit_maps(kspace * mask, mask)
    soft = espirit_maps(kspace * mask, mask, soft=0.999)
    assert torch.equal(espirit_maps(kspace * mask, mask, soft=None), hard)
    assert torch.equal(soft.abs().sum(0) > 0, hard.abs().sum(0) > 0)
    inside = hard.abs().sum(0) > 0
    w = soft.abs().square().sum(0).sqrt()
    # the weight is the map's norm: in (0, 1] inside the support, below 1 somewhere (the edge)
    assert float(w[inside].min()) > 0 and float(w.max()) <= 1 + 1e-5
    assert float(w[inside].min()) < 0.9
    # and the direction is the hard map's
    ratio = soft[:, inside] / w[inside]
    torch.testing.assert_close(ratio, hard[:, inside], atol=1e-5, rtol=1e-5)
