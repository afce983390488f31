"""The generalization benchmark's case generator: truths, noise, geometry and masks it promises."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization_cases import (  # noqa: E402
    COIL_KINDS,
    EQUISPACED_CLASSES,
    MASK_CLASSES,
    CoilSpec,
    Placement,
    SliceSpec,
    Subject,
    _wire_field,
    case_plan,
    make_case,
    make_mask,
    prior_subjects,
    real_brain_case,
)
from diffusion_core.fft import fft2c, ifft2c  # noqa: E402

BRAIN = ROOT.parent / "shared" / "data" / "eval" / "brain8ch_full_c_y_x.npy"


def ellipsoid_subject(semi: tuple[float, float, float] = (30.0, 40.0, 25.0)) -> Subject:
    """A 1 mm volume (x, y, z) 96^3 holding a uniform ellipsoid with the given semi-axes (mm)."""
    g = np.arange(96) - 47.5
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    inside = (x / semi[0]) ** 2 + (y / semi[1]) ** 2 + (z / semi[2]) ** 2 <= 1
    return Subject("ellipsoid", Path("ellipsoid.nii.gz"), inside.astype(np.float32) * 100)


@pytest.mark.parametrize("kind", COIL_KINDS)
def test_noise_free_sense_combination_is_the_reference(kind: str) -> None:
    case = make_case(
        ellipsoid_subject(), SliceSpec(2, 0.5), CoilSpec(kind, 9), 0.0, Placement((64, 48)), 3
    )
    maps = case.maps_true
    assert maps.shape == (9, 64, 48) and case.kspace.dtype == torch.complex64
    rss = maps.abs().pow(2).sum(0).sqrt()
    assert torch.allclose(rss, torch.ones_like(rss), atol=1e-5)
    combined = (maps.conj() * ifft2c(case.kspace)).sum(0)
    assert float((combined - case.reference).abs().max()) < 1e-5
    # the image is normalised: its 99th magnitude percentile is 1
    assert float(case.reference.abs().flatten().quantile(0.99)) == pytest.approx(1.0, abs=1e-5)


def test_noise_has_the_stated_sigma_and_the_seed_fixes_everything() -> None:
    args = (ellipsoid_subject(), SliceSpec(1, 0.4), CoilSpec("loops", 12), 0.03)
    case = make_case(*args, Placement((64, 64)), seed=5)
    noise = case.kspace - fft2c(case.maps_true * case.reference)
    parts = torch.cat([noise.real.flatten(), noise.imag.flatten()])
    assert case.noise_sigma == 0.03
    assert float(parts.std()) == pytest.approx(0.03, rel=0.02)
    again = make_case(*args, Placement((64, 64)), seed=5)
    assert torch.equal(again.kspace, case.kspace)
    other = make_case(*args, Placement((64, 64)), seed=6)
    assert not torch.allclose(other.reference, case.reference)


def test_fov_scale_and_shift_place_the_object() -> None:
    # axial slice of the ellipsoid: 80 mm (y) x 60 mm (x); rows are y flipped, columns x
    subject = ellipsoid_subject()
    case = make_case(
        subject, SliceSpec(2, 0.5), CoilSpec("head_array", 8), 0.0, Placement((80, 80), 1.25), 0
    )
    inside = case.reference.abs() > 0.5
    rows = torch.nonzero(inside.any(1)).flatten()
    cols = torch.nonzero(inside.any(0)).flatten()
    # the larger extent (80 mm) spans 80 / 1.25 = 64 pixels; the smaller one 48
    assert int(rows[-1] - rows[0] + 1) == pytest.approx(64, abs=2)
    assert int(cols[-1] - cols[0] + 1) == pytest.approx(48, abs=2)
    assert case.meta.pixel_mm == pytest.approx(80 * 1.25 / 80, rel=0.03)
    shifted = make_case(
        subject,
        SliceSpec(2, 0.5),
        CoilSpec("head_array", 8),
        0.0,
        Placement((80, 80), 1.25, (0.1, -0.2)),
        0,
    )
    moved = shifted.reference.abs() > 0.5
    dy = float(
        torch.nonzero(moved)[:, 0].double().mean() - torch.nonzero(inside)[:, 0].double().mean()
    )
    dx = float(
        torch.nonzero(moved)[:, 1].double().mean() - torch.nonzero(inside)[:, 1].double().mean()
    )
    assert dy == pytest.approx(8, abs=1) and dx == pytest.approx(-16, abs=1)
    # a FOV smaller than the head cuts it (a partial head): object pixels touch the border
    partial = make_case(
        subject, SliceSpec(2, 0.5), CoilSpec("random", 8), 0.0, Placement((64, 64), 0.8), 0
    )
    edge = partial.reference.abs() > 0.5
    assert bool(edge[0].any() and edge[-1].any())


def test_wire_field_is_biot_savart() -> None:
    y = torch.tensor([[3.0]], dtype=torch.float64)
    x = torch.tensor([[4.0]], dtype=torch.float64)
    b = _wire_field(y, x, 0.0, 0.0)  # |B| = 1 / r at r = 5, direction z x r
    assert float(b.abs()) == pytest.approx(1 / 5)
    assert complex(b) == pytest.approx(complex(-3 / 25, -4 / 25))


@pytest.mark.parametrize("mask_class", MASK_CLASSES)
def test_masks_have_their_acceleration_and_calibration(mask_class: str) -> None:
    mask = make_mask(mask_class, (128, 120), seed=1)
    r = 4.0 if mask_class.startswith("R=4") else 8.0
    assert float(mask.mean()) == pytest.approx(1 / r, rel=0.05)
    if "1D" in mask_class:
        acs = round((20 if r == 4 else 16) * 120 / 180)
        assert bool(mask[:, 60 - acs // 2 : 60 - acs // 2 + acs].all())
        assert bool((mask == mask[:1]).all())  # whole columns
    else:
        assert bool(mask[64 - 8 : 64 + 8, 60 - 8 : 60 + 8].all())  # the 16 x 16 square
        assert float(mask[:, :40].mean()) < 1 / 8  # sparser away from the centre
    assert not torch.equal(mask, make_mask(mask_class, (128, 120), seed=2))


@pytest.mark.parametrize("mask_class", EQUISPACED_CLASSES)
def test_equispaced_masks_are_every_rth_line_and_a_24_line_block_per_192(mask_class: str) -> None:
    r = int(mask_class[2])
    mask = make_mask(mask_class, (192, 192), seed=1)
    assert bool((mask == mask[:1]).all())  # whole phase-encode lines
    lines = mask[0].numpy() > 0
    acs = np.zeros(192, dtype=bool)
    acs[96 - 12 : 96 + 12] = True
    grid = (np.arange(192) - 96) % r == 0  # the k = 0 line is on the grid
    np.testing.assert_array_equal(lines, acs | grid)
    assert torch.equal(mask, make_mask(mask_class, (192, 192), seed=2))  # no randomness
    wide = np.zeros(256, dtype=bool)
    wide[128 - 16 : 128 + 16] = True  # a 32-line block at 256
    wide |= (np.arange(256) - 128) % r == 0
    np.testing.assert_array_equal(make_mask(mask_class, (256, 256), 0)[0].numpy() > 0, wide)


def test_case_plan_varies_orientation_coils_noise_and_fov() -> None:
    specs = case_plan(ellipsoid_subject(), 12, (64, 64), seed=0)
    assert {s.slice_spec.axis for s in specs} == {0, 1, 2}
    assert {s.coils.kind for s in specs} == set(COIL_KINDS)
    assert {s.noise_level for s in specs} == {0.01, 0.03}
    assert all(8 <= s.coils.count <= 16 for s in specs)
    assert sum(s.placement.fov_scale < 1 for s in specs) == 3  # one in four a partial head
    assert case_plan(ellipsoid_subject(), 12, (64, 64), seed=0) == specs


def test_prior_subjects_reads_the_model_card() -> None:
    splits = prior_subjects(ROOT / "diffusion_core" / "priors" / "default.json")
    assert splits["niivue_FLAIR"] == "validation"
    assert splits["colin27"] == "train"


@pytest.mark.skipif(not BRAIN.is_file(), reason="../shared/data/eval is not present")
def test_real_brain_case_reference_and_reduced_size() -> None:
    case = real_brain_case(BRAIN, size=96)
    assert tuple(case.kspace.shape) == (8, 96, 75)
    # noise-free except for the scanner's noise: the full SENSE combination is the reference
    combined = (case.maps_true.conj() * ifft2c(case.kspace)).sum(0)
    assert torch.allclose(combined, case.reference, atol=1e-4 * float(case.reference.abs().max()))
    assert 0 < case.noise_sigma < 0.05 * float(case.reference.abs().max())
    assert math.isnan(case.meta.noise_level)


def test_bad_specs_name_the_item() -> None:
    with pytest.raises(ValueError, match=r"CoilSpec\.kind"):
        CoilSpec("solenoid", 8)
    with pytest.raises(ValueError, match="mask class"):
        make_mask("R=3", (64, 64), 0)
    with pytest.raises(ValueError, match=r"Placement\.fov_scale"):
        Placement((64, 64), 5.0)
