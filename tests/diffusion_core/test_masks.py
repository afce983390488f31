import pytest
import torch

from diffusion_core.calibration import calibration_data, calibration_region
from diffusion_core.masks import (
    equispaced_columns_mask,
    poisson_disc_mask,
    random_columns_mask,
    regular_spacing,
)


def test_random_columns_mask_count_acs_and_seed():
    mask = random_columns_mask((230, 180), 4.0, 20, seed=3)
    assert mask.dtype == torch.float32 and mask.shape == (230, 180)
    cols = mask[0]
    assert torch.equal(mask, cols.expand(230, 180))  # whole columns
    assert int(cols.sum()) == 45  # round(180 / 4)
    assert bool(cols[80:100].all())  # centred ACS block around kx // 2 = 90
    assert torch.equal(mask, random_columns_mask((230, 180), 4.0, 20, seed=3))
    assert not torch.equal(mask, random_columns_mask((230, 180), 4.0, 20, seed=4))


def test_equispaced_columns_mask_spacing():
    cols = equispaced_columns_mask((64, 64), 4, 8)[0]
    expected = torch.zeros(64)
    expected[0::4] = 1  # aligned on the centre column 32
    expected[28:36] = 1
    assert torch.equal(cols, expected)


def test_regular_spacing_tells_a_scanners_grid_from_random_lines():
    for r in (2, 3, 4, 8):
        mask = equispaced_columns_mask((192, 160), r, 24)
        assert regular_spacing(mask, axis=1) == r
        assert regular_spacing(mask.T.contiguous(), axis=0) == r  # rows as the readouts
        partial = mask.clone()
        partial[:, :50] = 0  # partial Fourier: the first 50 lines not acquired
        assert regular_spacing(partial, axis=1) == r
    dropped = equispaced_columns_mask((192, 192), 2, 24)
    dropped[:, [2, 40, 150]] = 0  # three dropped lines of 84 outside the block: still regular
    assert regular_spacing(dropped, axis=1) == 2
    holes = equispaced_columns_mask((192, 192), 2, 24)
    holes[:, 0:60:4] = 0  # a quarter of one side's grid missing: not a regular acquisition
    assert regular_spacing(holes, axis=1) is None
    shifted = equispaced_columns_mask((192, 192), 4, 24)
    shifted[:, 9] = 1  # a line off the grid (the grid: 96 + 4 k)
    assert regular_spacing(shifted, axis=1) is None
    for seed in range(10):  # random lines have gaps of 1 somewhere
        assert regular_spacing(random_columns_mask((192, 192), 4.0, 21, seed), axis=1) is None
        assert regular_spacing(random_columns_mask((192, 192), 8.0, 16, seed), axis=1) is None
    assert regular_spacing(torch.ones(64, 64), axis=1) is None  # fully sampled: no lines outside
    centre_missing = equispaced_columns_mask((64, 64), 2, 8)
    centre_missing[:, 32] = 0
    assert regular_spacing(centre_missing, axis=1) is None


def test_poisson_disc_mask_fraction_calibration_and_density():
    mask = poisson_disc_mask((230, 180), 8.0, 24, seed=0)
    assert mask.shape == (230, 180) and mask.dtype == torch.float32
    assert abs(float(mask.mean()) * 8.0 - 1.0) < 0.03
    assert bool(mask[115 - 12 : 115 + 12, 90 - 12 : 90 + 12].all())
    ky = torch.arange(230)[:, None] - 115
    kx = torch.arange(180)[None, :] - 90
    radius = (ky.float() / 115) ** 2 + (kx.float() / 90) ** 2
    ring_inner = mask[(radius > 0.1) & (radius < 0.25)].mean()
    ring_outer = mask[radius > 0.6].mean()
    assert ring_inner > 2 * ring_outer  # variable density
    assert not torch.equal(mask, poisson_disc_mask((230, 180), 8.0, 24, seed=1))


def test_calibration_region_of_column_and_poisson_masks():
    assert calibration_region(random_columns_mask((230, 180), 4, 20, 0)) == (
        slice(0, 230),
        slice(80, 100),
    )
    rows, cols = calibration_region(poisson_disc_mask((100, 90), 6, 20, 0))
    assert rows.stop - rows.start >= 20 and cols.stop - cols.start >= 20
    assert rows.start <= 40 and rows.stop >= 60 and cols.start <= 35 and cols.stop >= 55
    mask = torch.zeros(32, 32)
    mask[10:20, 12:18] = 1
    assert calibration_region(mask) == (slice(10, 20), slice(12, 18))


def test_calibration_errors_name_the_item():
    with pytest.raises(ValueError, match="mask: the k-space centre"):
        calibration_region(torch.zeros(16, 16))
    kspace = torch.ones(2, 16, 16, dtype=torch.complex64)
    with pytest.raises(ValueError, match=r"mask: shape \(16, 15\) does not match"):
        calibration_data(kspace, torch.ones(16, 15))
    with pytest.raises(ValueError, match="acceleration"):
        random_columns_mask((16, 16), 0.5, 4, 0)
    with pytest.raises(ValueError, match="acs"):
        random_columns_mask((16, 16), 2, 17, 0)
