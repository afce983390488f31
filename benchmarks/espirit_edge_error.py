"""Where ESPIRiT's maps are wrong on a held-out case, and whether the top eigenvalue says so.

On the generalization benchmark's case whose name contains ``--case`` (default: the partial-head
``sagittal`` case, the minimum of the held-out table), for one mask: per band of pixels by their
distance to the FOV's top/bottom and left/right edges (inside the object, |reference| > 5 % of
its maximum), the mean map error 1 - |<m_espirit, m_true>| (unit-norm maps, so 0 = right up to
phase) and the mean top eigenvalue of ESPIRiT's W(r). A soft-SENSE weight is a function of that
eigenvalue, so it can only down-weight the wrong pixels if their eigenvalue stands out.

    PYTHONPATH=$PWD nice -n 10 python benchmarks/espirit_edge_error.py --mask "R=8 1D random"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization import DATA, build_cases  # noqa: E402
from benchmarks.generalization_cases import make_mask  # noqa: E402
from diffusion_core import espirit  # noqa: E402
from diffusion_core.calibration import calibration_data  # noqa: E402

BANDS = ((0, 4), (4, 10), (10, 20), (20, 10_000))


def held_out_flair_cases(data_dir: Path) -> list:
    """The generalization benchmark's 4 held-out niivue_FLAIR cases at 96 x 96 (case seed 0)."""
    ns = argparse.Namespace(
        data_dir=data_dir,
        subjects=["niivue_FLAIR"],
        cases_per_subject=4,
        case_seed=0,
        size=96,
        real_size=128,
    )
    return build_cases(ns)


def image_space_matrices(
    kspace: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, tuple[int, int], tuple[int, ...]]:
    """ESPIRiT's W(r) (y, x, c, c), its kernel and the calibration block's shape for ``kspace``
    under ``mask``, by the steps and defaults of :func:`diffusion_core.espirit.espirit_maps`."""
    cal = calibration_data(kspace, mask, None, (espirit.CALIB_SIZE, espirit.CALIB_SIZE))
    kernel = espirit.kernel_shape((cal.shape[-2], cal.shape[-1]), 6)
    kernels = espirit._kernels(cal, kernel, espirit.THRESHOLD)
    return espirit._image_space_matrices(kernels, kspace.shape[-2:]), kernel, tuple(cal.shape)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, default=DATA)
    p.add_argument("--case", default="sagittal")
    p.add_argument("--mask", default="R=8 1D random")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    case = next(c for c in held_out_flair_cases(args.data_dir) if args.case in c.meta.name)
    ref = case.reference
    ny, nx = ref.shape[-2:]
    obj = ref.abs() > 0.05 * ref.abs().max()
    mask = make_mask(args.mask, (ny, nx), args.seed)
    kspace = case.kspace * mask
    # the eigenvalue espirit_maps crops with, recomputed from its steps
    w, _, block = image_space_matrices(kspace, mask)
    value, _ = espirit._top_eigenpair(w)
    maps = espirit.espirit_maps(kspace, mask)
    err = 1 - (maps.conj() * case.maps_true).sum(0).abs()
    print(f"{case.meta.name}, {args.mask}, seed {args.seed}: calibration {block}")
    ry, rx = torch.arange(ny), torch.arange(nx)
    dist = {
        "rows from top/bottom": torch.minimum(ry, ny - 1 - ry)[:, None].expand(ny, nx),
        "columns from left/right": torch.minimum(rx, nx - 1 - rx)[None, :].expand(ny, nx),
    }
    print("| pixels | band | n | map error | top eigenvalue |\n|---|---|---|---|---|")
    for name, d in dist.items():
        for lo, hi in BANDS:
            s = obj & (d >= lo) & (d < hi)
            if bool(s.any()):
                band = f"{lo}-{hi - 1}" if hi < 10_000 else f">= {lo}"
                print(
                    f"| {name} | {band} | {int(s.sum())} | {float(err[s].mean()):.4f} | "
                    f"{float(value[s].mean()):.4f} |"
                )


if __name__ == "__main__":
    main()
