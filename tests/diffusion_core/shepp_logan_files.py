"""Test helper: Cartesian Shepp-Logan files from Debian's ismrmrd-tools, read with h5py.

``ismrmrd_generate_cartesian_shepp_logan`` writes the acquisitions (readout oversampled 2x) and,
beside them, the true coil sensitivities it simulated (``/dataset/csm``), which makes it a test of
coil-map estimation against ground truth on data written by the reference implementation.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

needs_ismrmrd_tools = pytest.mark.skipif(
    shutil.which("ismrmrd_generate_cartesian_shepp_logan") is None,
    reason="ismrmrd-tools (Debian package) not installed",
)

NOISE_MEASUREMENT = 1 << 18  # ISMRMRD_ACQ_IS_NOISE_MEASUREMENT (flag bit 19)


def generate(
    path: Path, *, matrix: int, coils: int, acceleration: int, noise: float, calib_width: int
) -> Path:
    """Write one file with the C++ generator; returns its path."""
    subprocess.run(
        [
            "ismrmrd_generate_cartesian_shepp_logan",
            "-m", str(matrix), "-c", str(coils), "-a", str(acceleration),
            "-w", str(calib_width), "-n", str(noise), "-o", str(path),
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return path


def _centred_ifft(x: np.ndarray, axis: int) -> np.ndarray:
    x = np.fft.ifftshift(x, axes=axis)
    return np.fft.fftshift(np.fft.ifft(x, axis=axis, norm="ortho"), axes=axis)


def _centred_fft(x: np.ndarray, axis: int) -> np.ndarray:
    x = np.fft.ifftshift(x, axes=axis)
    return np.fft.fftshift(np.fft.fft(x, axis=axis, norm="ortho"), axes=axis)


def read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kspace (c, ky, kx) complex64 with the readout oversampling removed, mask (ky, kx), and the
    file's true maps (c, y, x)."""
    with h5py.File(path, "r") as f:
        acqs = f["dataset/data"][()]
        csm = f["dataset/csm"][0]
    csm = (csm["real"] + 1j * csm["imag"]).astype(np.complex64)
    coils, ny, nx = csm.shape
    kspace = np.zeros((coils, ny, 2 * nx), dtype=np.complex64)
    mask = np.zeros((ny, nx), dtype=np.float32)
    for head, _traj, data in zip(acqs["head"], acqs["traj"], acqs["data"], strict=True):
        if int(head["flags"]) & NOISE_MEASUREMENT:
            continue
        samples = int(head["number_of_samples"])
        line = data.reshape(int(head["active_channels"]), samples, 2)
        row = int(head["idx"]["kspace_encode_step_1"])
        kspace[:, row] = line[..., 0] + 1j * line[..., 1]
        mask[row] = 1
    image = _centred_ifft(kspace, axis=-1)[..., nx // 2 : nx // 2 + nx]
    return _centred_fft(image, axis=-1).astype(np.complex64) * mask, mask, csm
