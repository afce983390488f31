"""Strong training augmentation: each part against what it promises, and the batch as a whole."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from diffusion_core.training.augment import (
    AugmentConfig,
    apply_monotone_curve,
    random_monotone_curves,
    random_phase_kinds,
    smooth_bias_field,
)
from diffusion_core.training.data import DataConfig, SliceBank, sample_batch

# Everything off but the geometry at zoom 1, no rotation, no extra shift.
PLAIN = AugmentConfig(
    zoom_range=(1.0, 1.0),
    aspect_range=(1.0, 1.0),
    rotation_deg=0.0,
    shift=0.0,
    contrast_prob=0.0,
    bias_prob=0.0,
    empty_prob=0.0,
)
NO_JITTER = dict(gamma_range=(1.0, 1.0), scale_range=(1.0, 1.0))


def _random_bank(shapes: list[tuple[int, int]], seed: int = 0) -> SliceBank:
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(s, generator=g) + 0.1 for s in shapes]
    return SliceBank(images, [f"s{i}" for i in range(len(images))])


def test_off_reproduces_the_shipped_recipe_batches() -> None:
    """augment=None: the same batch as before the option existed (numbers from that code)."""
    g = torch.Generator().manual_seed(0)
    bank = SliceBank(
        [torch.rand(40, 30, generator=g), torch.rand(20, 50, generator=g) * 2], ["a", "b"]
    )
    x = sample_batch(bank, 6, DataConfig(crop=32), torch.Generator().manual_seed(5))
    assert float(x.abs().sum()) == pytest.approx(3590.86083984375, rel=1e-6)
    assert float(x.real.sum()) == pytest.approx(-959.5506591796875, rel=1e-5)
    assert float(x.imag.sum()) == pytest.approx(-760.6211547851562, rel=1e-5)


def test_zoom_one_without_rotation_is_the_identity() -> None:
    bank = _random_bank([(32, 32)])
    config = DataConfig(crop=32, flips=False, augment=PLAIN, **NO_JITTER)
    x = sample_batch(bank, 4, config, torch.Generator().manual_seed(1))
    for sample in x.abs():
        assert torch.allclose(sample, bank.images[0], atol=1e-5)


def test_zoom_one_crop_is_an_exact_window_of_a_larger_slice() -> None:
    bank = _random_bank([(40, 36)])
    config = DataConfig(crop=24, flips=False, augment=PLAIN, **NO_JITTER)
    image = bank.images[0]
    x = sample_batch(bank, 6, config, torch.Generator().manual_seed(2)).abs()
    windows = image.unfold(0, 24, 1).unfold(1, 24, 1)  # (17, 13, 24, 24)
    offsets = set()
    for sample in x:
        error = (windows - sample).abs().amax(dim=(2, 3))
        assert float(error.min()) < 1e-5  # the crop is one of the windows, no interpolation
        offsets.add(int(error.argmin()))
    assert len(offsets) > 1  # and the window moves


def test_zoom_two_doubles_the_head() -> None:
    """A 8x8 square at zoom 2 covers 16x16 output pixels (about: bicubic edges)."""
    image = torch.zeros(32, 32)
    image[12:20, 12:20] = 1.0
    bank = SliceBank([image], ["s"])
    augment = replace(PLAIN, zoom_range=(2.0, 2.0))
    config = DataConfig(crop=64, flips=False, augment=augment, **NO_JITTER)
    x = sample_batch(bank, 2, config, torch.Generator().manual_seed(0)).abs()
    area = (x > 0.5).float().sum(dim=(1, 2))
    assert torch.all((area >= 14**2) & (area <= 18**2))


def test_rotation_turns_the_gradient_of_a_ramp_by_up_to_the_stated_angle() -> None:
    """On the ramp image(y, x) = y the crop's gradient is (cos t, -sin t): unit length, angle t."""
    ramp = torch.arange(96.0)[:, None].expand(96, 96).contiguous()
    augment = replace(PLAIN, rotation_deg=90.0)
    config = DataConfig(crop=16, flips=False, augment=augment, **NO_JITTER)
    x = sample_batch(SliceBank([ramp], ["s"]), 64, config, torch.Generator().manual_seed(3)).abs()
    centre = x[:, 5:11, 5:11]  # inside the slice at any angle and shift
    gy = centre.diff(dim=1).mean(dim=(1, 2))
    gx = centre.diff(dim=2).mean(dim=(1, 2))
    assert torch.allclose(torch.hypot(gy, gx), torch.ones(64), atol=0.02)
    angle = torch.rad2deg(torch.atan2(-gx, gy))
    assert float(angle.abs().max()) < 91 and float(angle.max()) > 75 and float(angle.min()) < -75


def test_monotone_contrast_keeps_pixel_order_and_the_ends() -> None:
    g = torch.Generator().manual_seed(4)
    slopes = random_monotone_curves(8, pieces=6, std=0.8, prob=1.0, generator=g)
    assert torch.all(slopes > 0) and torch.allclose(slopes.mean(dim=1), torch.ones(8))
    magnitude = torch.rand((8, 20, 20), generator=g) * 1.4
    mapped = apply_monotone_curve(magnitude, slopes)
    order = magnitude.flatten(1).argsort(dim=1)
    assert torch.all(mapped.flatten(1).gather(1, order).diff(dim=1) > 0)
    ends = apply_monotone_curve(torch.tensor([0.0, 1.0]).expand(8, 1, 2), slopes)
    assert torch.allclose(ends[..., 0], torch.zeros(8, 1), atol=1e-6)
    assert torch.allclose(ends[..., 1], torch.ones(8, 1), atol=1e-5)
    assert float((mapped - magnitude).abs().max()) > 0.05  # it does change the contrast
    identity = random_monotone_curves(8, pieces=6, std=0.8, prob=0.0, generator=g)
    assert torch.allclose(apply_monotone_curve(magnitude, identity), magnitude, atol=1e-6)


def test_bias_field_is_smooth_positive_and_bounded() -> None:
    config = AugmentConfig(bias_prob=1.0, bias_max=1.6, bias_grid=3)
    field = smooth_bias_field(32, (64, 64), config, torch.Generator().manual_seed(5))
    assert float(field.min()) >= 1 / 1.6 - 1e-6 and float(field.max()) <= 1.6 + 1e-6
    log_field = field.log()
    steps = torch.cat(
        [log_field.diff(dim=1).abs().flatten(), log_field.diff(dim=2).abs().flatten()]
    )
    # a 3x3 grid over 64 pixels: at most ~ log(1.6) * 2 / 32 per pixel (bicubic overshoot aside)
    assert float(steps.max()) < 0.05
    assert float(log_field.amax(dim=(1, 2)).sub(log_field.amin(dim=(1, 2))).median()) > 0.2
    off = smooth_bias_field(4, (16, 16), replace(config, bias_prob=0.0), torch.Generator())
    assert torch.equal(off, torch.ones_like(off))


def test_empty_background_samples_are_pure_noise_of_the_stated_level() -> None:
    bank = _random_bank([(48, 48)])
    augment = AugmentConfig(empty_prob=1.0, empty_noise=(0.05, 0.05))
    x = sample_batch(
        bank, 4, DataConfig(crop=64, augment=augment), torch.Generator().manual_seed(6)
    )
    parts = torch.view_as_real(x)
    assert torch.allclose(parts.std(dim=(1, 2, 3)), torch.full((4,), 0.05), rtol=0.05)
    assert float(parts.mean(dim=(1, 2, 3)).abs().max()) < 0.05 * 4 / 64  # zero mean (4 sigma)
    centre = x[:, 8:56, 8:56].abs()  # no trace of the slice (magnitudes 0.1-1.1 there)
    assert float(centre.mean()) < 0.08
    some = sample_batch(
        bank, 256, DataConfig(crop=16, augment=replace(augment, empty_prob=0.25)), torch.Generator()
    )
    empty = some.abs().amax(dim=(1, 2)) < 0.5
    assert 0.15 < float(empty.float().mean()) < 0.35


def test_phase_kinds_are_smooth_ramps_and_near_constant() -> None:
    config = AugmentConfig(phase_weights=(1.0, 1.0, 1.0), ramp_cycles=2.0, constant_std=0.1)
    phase, kind = random_phase_kinds(
        300, (32, 32), config, 4, 1.0, torch.Generator().manual_seed(7)
    )
    counts = torch.bincount(kind, minlength=3)
    assert torch.all(counts > 70)
    centred = phase - phase.mean(dim=(1, 2), keepdim=True)
    spread = centred.std(dim=(1, 2))
    assert float(spread[kind == 2].max()) < 0.25  # near-constant
    assert float(spread[kind == 0].median()) > 0.4  # smooth, order-1 variation
    ramps = phase[kind == 1]
    second = ramps.diff(dim=1).diff(dim=1).abs().amax()
    assert float(second) < 1e-4  # linear along y (and x, by the same construction)
    slope = ramps.diff(dim=2).abs().amax()
    assert float(slope) <= 2 * math.pi * 2.0 / 32 + 1e-5  # at most 2 cycles across the crop


def test_a_seed_reproduces_an_augmented_batch_on_real_and_complex_slices() -> None:
    real = _random_bank([(40, 30), (20, 50)])
    complex_bank = SliceBank([im * torch.exp(1j * im) for im in real.images], real.subjects)
    for bank in (real, complex_bank):
        config = DataConfig(crop=32, augment=AugmentConfig())
        first = sample_batch(bank, 8, config, torch.Generator().manual_seed(8))
        again = sample_batch(bank, 8, config, torch.Generator().manual_seed(8))
        other = sample_batch(bank, 8, config, torch.Generator().manual_seed(9))
        assert first.shape == (8, 32, 32) and first.dtype == torch.complex64
        assert torch.equal(first, again) and not torch.equal(first, other)
        assert torch.isfinite(first).all()


def test_bad_ranges_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="zoom_range"):
        AugmentConfig(zoom_range=(1.5, 0.5))
    with pytest.raises(ValueError, match="empty_prob"):
        AugmentConfig(empty_prob=1.5)
    with pytest.raises(ValueError, match="phase_weights"):
        AugmentConfig(phase_weights=(0.0, 0.0, 0.0))
