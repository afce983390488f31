import math

import pytest
import torch
from bart_io import bart, brain_reference, needs_bart, read_cfl, write_cfl

from diffusion_core.espirit import espirit_maps, fix_phase
from diffusion_core.fft import fft2c
from diffusion_core.masks import poisson_disc_mask, random_columns_mask


def correlation(maps: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-pixel |<maps, truth>| / (|maps| |truth|) over coils (insensitive to each pixel's phase)."""
    num = (maps.conj() * truth).sum(0).abs()
    den = maps.abs().square().sum(0).sqrt() * truth.abs().square().sum(0).sqrt()
    return num / den.clamp_min(1e-12)


def global_correlation(maps: torch.Tensor, truth: torch.Tensor, region: torch.Tensor) -> float:
    """|<maps, truth>| / (||maps|| ||truth||) over coils and pixels of region: one common phase."""
    a, b = maps[:, region], truth[:, region]
    return float((a.conj() * b).sum().abs() / (a.norm() * b.norm()))


def simulated_case(ny=128, nx=112, coils=8, noise=1e-3, seed=0):
    """Elliptical object with smooth phase, smooth Gaussian coil profiles with linear phase."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, ny), torch.linspace(-1, 1, nx), indexing="ij")
    inside = (y / 0.8) ** 2 + (x / 0.7) ** 2 < 1
    image = (
        inside
        * (1 + 0.5 * torch.cos(3 * x) * torch.sin(2 * y))
        * torch.exp(1j * (0.5 * x + 0.3 * y))
    )
    profiles = []
    for c in range(coils):
        a = 2 * math.pi * c / coils
        mag = torch.exp(-((y - 1.2 * math.sin(a)) ** 2 + (x - 1.2 * math.cos(a)) ** 2) / 1.5)
        profiles.append(mag * torch.exp(1j * (a + 0.7 * x * math.cos(a) + 0.5 * y)))
    sens = torch.stack(profiles).to(torch.complex64)
    g = torch.Generator().manual_seed(seed)
    kspace = fft2c(sens * image)
    kspace = kspace + noise * torch.randn(kspace.shape, generator=g, dtype=torch.complex64)
    return kspace, sens, inside


@pytest.mark.parametrize("kind", ["columns", "poisson"])
def test_maps_match_simulated_sensitivities(kind):
    kspace, sens, inside = simulated_case()
    if kind == "columns":
        mask = random_columns_mask(kspace.shape[-2:], 4, 24, seed=0)
    else:
        mask = poisson_disc_mask(kspace.shape[-2:], 6, 24, seed=0)
    maps = espirit_maps(kspace * mask, mask)
    assert maps.dtype == torch.complex64 and maps.shape == sens.shape
    corr = correlation(maps, sens)[inside]
    assert float(corr.min()) >= 0.95
    assert float(corr.mean()) >= 0.99
    # unit norm inside the object (the eigenvector), zero far outside it
    torch.testing.assert_close(maps.abs().square().sum(0)[inside], torch.ones(int(inside.sum())))
    assert float(maps[:, :4, :4].abs().max()) == 0.0


def test_maps_match_truth_up_to_one_common_phase():
    kspace, sens, inside = simulated_case()
    maps = espirit_maps(kspace)
    # Give the truth the same per-pixel convention (unit norm, phase of the first principal component):
    # what remains between the two is a single common phase.
    unit = sens / sens.abs().square().sum(0).sqrt()
    truth = fix_phase(unit * inside)
    assert global_correlation(maps, truth, inside) >= 0.95
    assert float(correlation(maps, truth)[inside].min()) >= 0.95
    # the convention gives a smooth image phase: neighbouring map phases vary slowly
    dphase = (maps[:, 1:, :] * maps[:, :-1, :].conj()).sum(0).angle()[inside[1:] & inside[:-1]]
    assert float(dphase.abs().max()) < 0.2


@needs_bart
def test_brain_maps_match_bart_ecalib(tmp_path):
    kspace, _, _ = brain_reference()
    mask = random_columns_mask(kspace.shape[-2:], 4, 20, seed=0)
    undersampled = kspace * mask
    maps = espirit_maps(undersampled, mask)
    write_cfl(tmp_path / "k", undersampled.numpy())
    bart("ecalib", "-m1", tmp_path / "k", tmp_path / "s")
    reference = torch.from_numpy(read_cfl(tmp_path / "s"))
    assert reference.shape == maps.shape
    both = (maps.abs().sum(0) > 0) & (reference.abs().sum(0) > 0)
    assert int(both.sum()) > 0.5 * int((reference.abs().sum(0) > 0).sum())  # similar object support
    corr = correlation(maps, reference)[both]
    assert float(corr.quantile(0.01)) >= 0.95
    assert float(corr.mean()) >= 0.99
    assert global_correlation(maps, reference, both) >= 0.95  # BART also fixes phase by the 1st PC


def test_given_acs_slices_equal_the_detected_region():
    kspace, _, _ = simulated_case()
    mask = torch.zeros(kspace.shape[-2:])
    mask[:, 44:68] = 1  # ACS around kx // 2 = 56
    mask[:, ::5] = 1
    mask[:, 43] = mask[:, 68] = 0
    detected = espirit_maps(kspace * mask, mask)
    given = espirit_maps(kspace * mask, calib=(slice(None), slice(44, 68)))
    torch.testing.assert_close(given, detected)
    narrower = espirit_maps(kspace * mask, calib=(slice(40, 88), slice(48, 64)))
    assert not torch.equal(narrower, detected)


def test_single_coil_map_is_trivial():
    kspace, _, _ = simulated_case(coils=1)
    maps = espirit_maps(kspace)
    assert torch.equal(maps, torch.ones_like(kspace))


def test_bad_inputs_raise_named_errors():
    kspace, _, _ = simulated_case(ny=32, nx=32, coils=2)
    mask = random_columns_mask((32, 32), 2, 12, seed=0)
    with pytest.raises(TypeError, match="kspace: expected a complex"):
        espirit_maps(kspace.abs(), mask)
    bad = kspace.clone()
    bad[0, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="kspace: contains 1 NaN/Inf"):
        espirit_maps(bad, mask)
    with pytest.raises(ValueError, match="mask: shape"):
        espirit_maps(kspace, mask[:, :-1])
    small = torch.zeros(32, 32)
    small[:, 15:19] = 1  # 4 ACS columns: half of them is a 2-tap kernel
    with pytest.raises(ValueError, match=r"calibration region.*too small"):
        espirit_maps(kspace * small, small)
    with pytest.raises(ValueError, match="kspace: expected shape"):
        espirit_maps(kspace[0], None)


def test_calibration_size_limits_the_block_and_must_fit_the_kernel():
    kspace, _, _ = simulated_case(ny=64, nx=64, coils=4)
    mask = torch.zeros(64, 64)
    mask[:, 20:44] = 1  # ACS: all rows x 24 columns
    limited = espirit_maps(kspace * mask, mask)  # 24 x 24 around the centre
    centre = espirit_maps(kspace * mask, calib=(slice(20, 44), slice(20, 44)), calib_size=64)
    torch.testing.assert_close(limited, centre)
    with pytest.raises(ValueError, match=r"calibration region: \(4, 4\) is too small.*at least 5"):
        espirit_maps(kspace * mask, mask, calib_size=4)
    with pytest.raises(ValueError, match="calibration region: holds no signal"):
        espirit_maps(torch.zeros_like(kspace), mask)
