"""Training data: volumes -> isotropic slices, raw k-space files -> combined slices, batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from training_data_files import (
    disc_image,
    ellipsoid_volume,
    write_fastmri,
    write_ismrmrd,
    write_nifti,
)

from diffusion_core.normalization import magnitude_scale
from diffusion_core.training.data import (
    DataConfig,
    SliceBank,
    load_slice_bank,
    sample_batch,
    smooth_random_phase,
    split_by_subject,
    subject_of,
)
from diffusion_core.training.volumes import nonempty_slices, resample_isotropic


def test_resample_to_isotropic_pixels() -> None:
    volume = np.ones((20, 30, 10), dtype=np.float32)
    out = resample_isotropic(volume, (2.0, 1.0, 0.5), pixel_mm=1.0)
    assert out.shape == (40, 30, 5)
    assert np.allclose(out, 1.0)


def test_nonempty_slices_drop_background_slices() -> None:
    volume = np.zeros((40, 40, 40), dtype=np.float32)
    volume[10:30, 10:30, 10:30] = 1.0  # a cube: 20 object slices per axis, 25 % object each
    assert len(nonempty_slices(volume, min_foreground=0.2)) == 3 * 20
    assert len(nonempty_slices(volume, min_foreground=0.3)) == 0


def test_volume_folder_gives_normalised_slices(tmp_path: Path) -> None:
    volume = ellipsoid_volume((24, 48, 40), (10, 20, 16))
    write_nifti(tmp_path / "anisotropic.nii.gz", volume, (2.0, 1.0, 1.0))  # x resampled to 48
    bank = load_slice_bank([tmp_path], DataConfig(min_foreground=0.1))
    assert bank.subject_names == ["anisotropic"]
    shapes = {tuple(im.shape) for im in bank.images}
    assert shapes <= {(48, 40), (48, 40), (48, 40), (48, 48)}  # (y,z) (x,z) (x,y) after resampling
    assert (48, 48) in shapes and (48, 40) in shapes
    scales = torch.stack([magnitude_scale(im) for im in bank.images])
    assert torch.allclose(scales, torch.ones_like(scales), atol=1e-5)


def test_no_usable_slices_is_a_clear_error(tmp_path: Path) -> None:
    write_nifti(tmp_path / "empty.nii", np.zeros((16, 16, 16), dtype=np.uint8), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="no usable slices"):
        load_slice_bank([tmp_path])
    (tmp_path / "empty.nii").unlink()
    with pytest.raises(ValueError, match="0 NIfTI/MGZ/HDF5 files"):
        load_slice_bank([tmp_path])


def test_split_by_subject_holds_out_every_slice_of_a_subject() -> None:
    assert subject_of(Path("x/colin27_ch2better_0.5mm_mricron.nii.gz")) == "colin27"
    assert subject_of(Path("x/colin27_ch2_mricron.nii.gz")) == "colin27"
    assert subject_of(Path("x/other.mgz")) == "other"
    bank = SliceBank([torch.ones(4, 4) * i for i in range(6)], ["a", "b", "a", "c", "b", "a"])
    train, val = split_by_subject(bank, ["a"])
    assert val.subjects == ["a", "a", "a"] and sorted(train.subjects) == ["b", "b", "c"]
    assert [float(im[0, 0]) for im in val.images] == [0.0, 2.0, 5.0]
    with pytest.raises(ValueError, match=r"\['z'\] not in the data"):
        split_by_subject(bank, ["z"])
    with pytest.raises(ValueError, match="no training slices left"):
        split_by_subject(bank, ["a", "b", "c"])


def test_batches_are_reproducible_and_augmented() -> None:
    bank = SliceBank([torch.ones(40, 30), torch.full((20, 50), 2.0)], ["a", "b"])
    config = DataConfig(crop=32)
    first = sample_batch(bank, 8, config, torch.Generator().manual_seed(3))
    again = sample_batch(bank, 8, config, torch.Generator().manual_seed(3))
    other = sample_batch(bank, 8, config, torch.Generator().manual_seed(4))
    assert first.shape == (8, 32, 32) and first.dtype == torch.complex64
    assert torch.equal(first, again) and not torch.equal(first, other)
    # Magnitudes: 1 or 2 to a gamma in [0.8, 1.25], times a scale in [0.85, 1.15], or 0 (padding).
    mag = first.abs()
    inside = mag[mag > 0]
    assert float(inside.min()) >= 0.85 - 1e-5 and float(inside.max()) <= 1.15 * 2**1.25 + 1e-5
    assert float((mag == 0).float().mean()) > 0.05  # slices smaller than the crop are padded


def test_smooth_phase_is_smooth_and_random() -> None:
    g = torch.Generator().manual_seed(0)
    phase = smooth_random_phase(16, (64, 64), grid=4, std=1.0, generator=g)
    step = (phase[:, 1:, :] - phase[:, :-1, :]).abs()
    assert float(step.max()) < 0.5 and float(step.mean()) < 0.1  # no jumps between neighbours
    spread = (phase - phase.mean(dim=(1, 2), keepdim=True)).std()
    assert float(spread) > 0.3  # but a real spatial variation
    assert float(phase.mean(dim=(1, 2)).std()) > 1.0  # global phases spread over [0, 2 pi)


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.abs().flatten().double(), b.abs().flatten().double()
    return float((a @ b) / (a.norm() * b.norm()))


def test_fastmri_file_gives_coil_combined_slices(tmp_path: Path) -> None:
    images = torch.stack([disc_image(48, seed) for seed in range(2)])
    write_fastmri(tmp_path / "scan.h5", images, coils=4)
    bank = load_slice_bank([tmp_path])
    assert len(bank) == 2 and bank.subjects == ["scan", "scan"]
    for got, want in zip(bank.images, images, strict=True):
        assert got.is_complex()
        assert _correlation(got, want) > 0.99


def test_ismrmrd_file_gives_coil_combined_slice(tmp_path: Path) -> None:
    image = disc_image(48, 7)
    write_ismrmrd(tmp_path / "raw.h5", image, coils=4)
    bank = load_slice_bank([tmp_path])
    assert len(bank) == 1 and bank.images[0].shape == (48, 48)  # readout oversampling removed
    assert _correlation(bank.images[0], image) > 0.99


def test_undersampled_ismrmrd_file_is_refused(tmp_path: Path) -> None:
    write_ismrmrd(tmp_path / "raw.h5", disc_image(32, 1), coils=2, skip_line=5)
    with pytest.raises(ValueError, match="31 of 32 phase-encode lines"):
        load_slice_bank([tmp_path])
