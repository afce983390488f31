"""The calibration cases of benchmarks/calibrate_default.py for heads the field of view cuts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.calibrate_default import (  # noqa: E402
    EDGE_CROPS,
    REAL_CROP,
    crop_width,
    edge_plan,
    entry_groups,
    partial_plan,
)
from benchmarks.generalization_cases import (  # noqa: E402
    COIL_KINDS,
    NOISE_LEVELS,
    Subject,
    make_mask,
    real_brain_case,
)
from diffusion_core.espirit import espirit_maps  # noqa: E402
from diffusion_core.fft import fft2c, ifft2c  # noqa: E402
from diffusion_core.masks import phase_encode_axis  # noqa: E402
from diffusion_core.normalization import magnitude_scale  # noqa: E402
from diffusion_core.reconstruct import (  # noqa: E402
    AT_EDGE,
    CUT,
    cg_sense,
    fov_edge_sides,
    fov_place,
)

BRAIN = ROOT.parent / "shared" / "data" / "eval" / "brain8ch_full_c_y_x.npy"


def box_subject() -> Subject:
    volume = np.zeros((64, 64, 64), np.float32)
    volume[16:48, 12:52, 20:44] = 100
    return Subject("box", Path("box.nii.gz"), volume)


def replay_place(kspace: torch.Tensor, seed: int) -> tuple[str, float, float]:
    """Where the replay's FOV rule puts the object of fully sampled ``kspace`` under an R=4 line
    mask: its CG-SENSE image's edge signal over the image scale, as ``reconstruct`` measures it."""
    mask = make_mask("R=4 1D random", tuple(kspace.shape[-2:]), seed=seed)
    y = kspace * mask
    sense = cg_sense(y, mask, espirit_maps(y, mask), max_iter=20)
    scale = float(magnitude_scale(sense))
    low, high = (v / scale for v in fov_edge_sides(sense, phase_encode_axis(mask)))
    return fov_place(low, high), low, high


def test_crop_width_keeps_the_central_columns_and_white_noise_its_level():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, 32, 40, dtype=torch.complex64, generator=g)
    reference = images[0].abs()
    kspace, ref = crop_width(fft2c(images), reference, 0.75)
    # 30 central columns of 40: 5 to 34
    assert kspace.shape == (4, 32, 30) and ref.shape == (32, 30)
    assert torch.allclose(ifft2c(kspace), images[..., 5:35], atol=1e-5)
    assert torch.equal(ref, reference[:, 5:35])
    # orthonormal FFTs: white noise of std 1 per complex entry stays so
    level = float(kspace.abs().square().mean().sqrt())
    assert level == pytest.approx(1.0, rel=0.05)
    # one side: the 30 columns at the high-x end (cut at low x only), or at the low-x end
    _, high = crop_width(fft2c(images), reference, 0.75, side=1)
    _, low = crop_width(fft2c(images), reference, 0.75, side=-1)
    assert torch.equal(high, reference[:, 10:]) and torch.equal(low, reference[:, :30])


def test_edge_plan_shifts_every_head_against_one_edge_in_turn():
    plan = edge_plan(box_subject(), 8, (64, 64), 14)
    assert len(plan) == 8
    assert all(1.0 <= s.placement.fov_scale <= 1.1 for s in plan)
    dx = [s.placement.shift[1] for s in plan]
    assert all(0.16 <= abs(d) <= 0.22 for d in dx)
    assert [d > 0 for d in dx] == [j % 2 == 1 for j in range(8)]


def test_partial_plan_is_partial_heads_with_every_coil_kind_and_noise_level():
    plan = partial_plan(box_subject(), 8, (64, 64), 14)
    assert len(plan) == 8
    assert all(0.8 <= s.placement.fov_scale < 0.95 for s in plan)
    assert {s.coils.kind for s in plan} == set(COIL_KINDS)
    assert {s.noise_level for s in plan} == set(NOISE_LEVELS)


@pytest.mark.skipif(not BRAIN.is_file(), reason="needs ../shared/data/eval")
def test_the_replays_fov_rule_finds_the_cropped_real_brain_cut_on_both_sides():
    real = real_brain_case(BRAIN, size=96)
    kspace, _ = crop_width(real.kspace, real.reference, REAL_CROP)
    place = replay_place(kspace, seed=100)
    assert place[0] == CUT, place


@pytest.mark.skipif(not BRAIN.is_file(), reason="needs ../shared/data/eval")
def test_the_replays_fov_rule_finds_the_one_side_cropped_real_brain_at_one_edge():
    real = real_brain_case(BRAIN, size=192)
    for seed, (fraction, side) in enumerate(zip(EDGE_CROPS, (1, -1), strict=True)):
        kspace, _ = crop_width(real.kspace, real.reference, fraction, side)
        place = replay_place(kspace, seed=100 + seed)
        assert place[0] == AT_EDGE, (fraction, side, place)


def test_cached_misfit_is_the_one_reconstruct_measured_on_prewhitened_data() -> None:
    """With --noise-scan the data are prewhitened inside reconstruct; the cached k-space is not,
    so rho recomputed from it is off by the whitening (it read 24-277 on FLAIR cases)."""
    from benchmarks.calibrate_default import residual_ratio
    from diffusion_core.reconstruct import ReconConfig, reconstruct
    from tests.diffusion_core.complex_checks import random_complex
    from tests.diffusion_core.gaussian_problem import smooth_circulant_prior, smooth_maps

    shape, sigma = (24, 24), 0.01
    g = torch.Generator().manual_seed(0)
    maps = smooth_maps(4, shape).to(torch.complex64)
    truth = smooth_circulant_prior(shape).sample((1,), g)[0].to(torch.complex64)
    mask = torch.zeros(shape)
    mask[:, ::2] = 1
    mask[:, 9:15] = 1
    kspace = (fft2c(maps * truth) + sigma * random_complex((4, *shape), g)) * mask
    cfg = ReconConfig(sampler="dds", nfe=4, num_samples=2, cg_iters=3, sigma_max=20.0)
    out = reconstruct(
        kspace,
        mask,
        smooth_circulant_prior(shape),
        cfg,
        maps=maps,
        noise_cov=2 * sigma**2 * torch.eye(4, dtype=torch.complex64),
        generator=g,
    )
    cached = {
        "kspace": kspace,
        "mask": mask,
        "maps": out.maps,
        "mean": out.mean,
        "noise": out.noise_sigma * out.scale,
        "residual_ratio": out.residual_ratio,
    }
    assert residual_ratio(cached) == out.residual_ratio and 0.3 < out.residual_ratio < 3.0
    del cached["residual_ratio"]
    assert residual_ratio(cached) > 10 * out.residual_ratio, residual_ratio(cached)  # the old way


def test_mask_classes_of_one_card_setting_are_fitted_into_one_entry():
    # at 192, R=2 and R=3 equispaced lines with their 24 ACS lines sample 108 and 80 of 192
    # lines (R 1.8 and 2.4: class 2), R=4 random 48 (class 4): one card entry for the first two
    # (else the second would replace the first's), each split by the CG iterations a case used
    shape = (192, 192)
    results, keys_by_class = {}, {}
    for mask_class, cgs in (
        ("R=2 1D equispaced", (5, 3)),
        ("R=3 1D equispaced", (5, 5)),
        ("R=4 1D random", (5, 3)),
    ):
        keys_by_class[mask_class] = []
        for i, cg in enumerate(cgs):
            key = f"dds|{mask_class}|case {i}"
            results[key] = {"mask": make_mask(mask_class, shape, seed=i), "cg_iters": cg}
            keys_by_class[mask_class].append(key)
    groups = entry_groups(results, keys_by_class, cg_iters=5, only_cg=[])
    assert groups == {
        ("R=2 1D equispaced + R=3 1D equispaced", 5): [
            "dds|R=2 1D equispaced|case 0",
            "dds|R=3 1D equispaced|case 0",
            "dds|R=3 1D equispaced|case 1",
        ],
        ("R=2 1D equispaced", 3): ["dds|R=2 1D equispaced|case 1"],
        ("R=4 1D random", 5): ["dds|R=4 1D random|case 0"],
        ("R=4 1D random", 3): ["dds|R=4 1D random|case 1"],
    }
    # only the CG settings asked for; a cache entry without its CG setting has the run's
    del results["dds|R=4 1D random|case 0"]["cg_iters"]
    only = entry_groups(results, keys_by_class, cg_iters=3, only_cg=[3])
    assert only == {
        ("R=2 1D equispaced", 3): ["dds|R=2 1D equispaced|case 1"],
        ("R=4 1D random", 3): ["dds|R=4 1D random|case 0", "dds|R=4 1D random|case 1"],
    }
