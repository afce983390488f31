import math

import pytest
import torch
from complex_checks import random_complex

from diffusion_core.coils import coil_compression_matrix, compress_coils, rss
from diffusion_core.noise import noise_covariance, prewhiten, prewhitening_matrix


def correlated_noise(n: int, seed: int, coils: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Complex noise (coils, n) with covariance L L^H (unit-variance complex entries of z)."""
    g = torch.Generator().manual_seed(100)
    mix = torch.eye(coils) + 0.4 * random_complex((coils, coils), g)
    z = random_complex((coils, n), torch.Generator().manual_seed(seed)) / math.sqrt(2)
    return mix @ z, mix @ mix.mH


def test_prewhitened_noise_has_identity_covariance_within_sampling_error():
    n1, n2 = 4096, 50_000
    scan, _ = correlated_noise(n1, seed=1)  # the noise scan
    data, _ = correlated_noise(n2, seed=2)  # independent noise in the "acquisition"
    w = prewhitening_matrix(noise_covariance(scan))
    cov = noise_covariance(prewhiten(data, w))
    # Each entry of a sample covariance of n white unit-variance complex samples has standard
    # deviation 1/sqrt(n). W carries the scan's error (W C W^H - I = -W (C_1 - C) W^H) and the data
    # add their own, so each entry errs by about sqrt(1/n1 + 1/n2); 5 standard deviations is the bound.
    tol = 5 * math.sqrt(1 / n1 + 1 / n2)
    err = (cov - torch.eye(8)).abs()
    assert float(err.max()) < tol
    # on the scan itself the whitening is exact
    torch.testing.assert_close(
        noise_covariance(prewhiten(scan, w)), torch.eye(8, dtype=torch.complex64), atol=1e-5, rtol=0
    )


def test_noise_covariance_estimates_the_true_covariance():
    noise, true_cov = correlated_noise(100_000, seed=3)
    est = noise_covariance(noise)
    scale = true_cov.diagonal().real.sqrt()
    # normalised entries C_ij / sqrt(C_ii C_jj) have standard deviation <= 1/sqrt(n)
    err = ((est - true_cov) / (scale[:, None] * scale[None, :])).abs()
    assert float(err.max()) < 5 / math.sqrt(100_000)


def test_prewhitening_errors_name_the_item():
    with pytest.raises(ValueError, match="cov: expected a positive definite"):
        prewhitening_matrix(torch.zeros(3, 3, dtype=torch.complex64))
    with pytest.raises(ValueError, match="cov: expected a square"):
        prewhitening_matrix(torch.zeros(3, 2, dtype=torch.complex64))
    with pytest.raises(TypeError, match="noise: expected a complex"):
        noise_covariance(torch.zeros(3, 10))
    with pytest.raises(ValueError, match=r"matrix: expected shape \(4, 4\)"):
        prewhiten(torch.zeros(4, 5, dtype=torch.complex64), torch.eye(3, dtype=torch.complex64))


def test_rss_value():
    x = torch.zeros(2, 3, 1, 1, dtype=torch.complex64)
    x[0, :, 0, 0] = torch.tensor([3, 4j, 0])
    x[1, :, 0, 0] = torch.tensor([1 + 1j, 1, 1j])
    torch.testing.assert_close(rss(x)[:, 0, 0], torch.tensor([5.0, 2.0]))


def test_coil_compression_keeps_the_dominant_subspace():
    g = torch.Generator().manual_seed(5)
    # 8 coils that are mixtures of 3 sources plus weak noise
    sources = random_complex((3, 2000), g)
    data = random_complex((8, 3), g) @ sources + 1e-3 * random_complex((8, 2000), g)
    matrix = coil_compression_matrix(data, 3)
    assert matrix.shape == (3, 8)
    torch.testing.assert_close(
        matrix @ matrix.mH, torch.eye(3, dtype=torch.complex64), atol=1e-5, rtol=0
    )
    compressed = compress_coils(data, matrix)
    kept = compressed.abs().square().sum() / data.abs().square().sum()
    assert float(kept) > 0.9999
    energies = compressed.abs().square().sum(1)
    assert bool((energies[:-1] >= energies[1:]).all())  # strongest virtual coil first
    with pytest.raises(ValueError, match="n_virtual"):
        coil_compression_matrix(data, 9)
