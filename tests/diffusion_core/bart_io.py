"""Test helpers: the real brain case and a minimal BART .cfl reader/writer driven via subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(
    os.environ.get("GADGETRON_DIFFUSION_DATA", Path(__file__).parents[2] / ".." / "shared" / "data")
)
BRAIN = DATA / "eval" / "brain8ch_full_c_y_x.npy"

needs_brain = pytest.mark.shared_data  # BRAIN lies in ../shared/data, not in the repository

needs_bart = pytest.mark.skipif(
    shutil.which("bart") is None, reason="BART (Debian package bart) not installed"
)


def write_cfl(stem: Path, array: np.ndarray) -> None:
    """(c, ky, kx) or (y, x) complex -> BART dims [kx, ky, 1, c] (column-major: last numpy axis first)."""
    dims = [array.shape[-1], array.shape[-2], 1, array.shape[0] if array.ndim == 3 else 1]
    stem.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(map(str, dims)) + "\n")
    np.ascontiguousarray(array, dtype=np.complex64).tofile(stem.with_suffix(".cfl"))


def read_cfl(stem: Path) -> np.ndarray:
    """BART array -> numpy with the axis order reversed (C order), singleton axes dropped."""
    dims = [int(v) for v in stem.with_suffix(".hdr").read_text().splitlines()[1].split()]
    data = np.fromfile(stem.with_suffix(".cfl"), dtype=np.complex64)
    return data.reshape(dims[::-1]).squeeze()


def bart(*args: str | Path) -> None:
    subprocess.run(["bart", *map(str, args)], check=True, capture_output=True)


@lru_cache(maxsize=1)
def brain_reference() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full k-space (8, 230, 180), maps from the full data, and their SENSE combination (the reference)."""
    from diffusion_core.classical import zero_filled
    from diffusion_core.espirit import espirit_maps

    kspace = torch.from_numpy(np.load(BRAIN))
    maps = espirit_maps(kspace)
    ref = zero_filled(kspace, torch.ones(kspace.shape[-2:]), maps)
    return kspace, maps, ref
