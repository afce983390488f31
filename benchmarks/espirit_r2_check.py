"""CG-SENSE with three coil-map sets on replay-check heads: are the product's maps what limits it?

For heads of ``replay_check.py``'s case plans (``--heads PLAN_SEED:INDEX``, case ``INDEX`` of
``case_plan(niivue_FLAIR, 4, matrix, PLAN_SEED)``) under the named line masks, the PSNR (object
pixels, as the replay check scores) of an unregularised CG-SENSE image (``--cg-iters``) made with
the simulation's true maps, with the product's ESPIRiT maps from the calibration lines
(:func:`diffusion_core.espirit.espirit_maps`) and with ``bart ecalib -m1``'s. Equal columns for
the product's and BART's maps: a gap between the product and BART's L1-wavelet on such a case is
not in the maps.

    PYTHONPATH=$PWD python benchmarks/espirit_r2_check.py --matrix 256 --heads 17:1 17:3 11:0
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization_cases import (  # noqa: E402
    EQUISPACED_CLASSES,
    MASK_CLASSES,
    case_plan,
    load_subject,
    make_case,
    make_mask,
)
from diffusion_core.espirit import espirit_maps  # noqa: E402
from diffusion_core.metrics import object_region, psnr  # noqa: E402
from diffusion_core.reconstruct import cg_sense  # noqa: E402
from tests.diffusion_core.bart_io import read_cfl, write_cfl  # noqa: E402


def bart_maps(kspace: torch.Tensor) -> torch.Tensor:
    """``bart ecalib -m1`` maps (c, y, x) of undersampled k-space (c, ky, kx)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_cfl(work / "k", kspace.numpy())
        subprocess.run(
            ["bart", "ecalib", "-m1", work / "k", work / "s"], check=True, capture_output=True
        )
        return torch.from_numpy(np.ascontiguousarray(read_cfl(work / "s"))).to(torch.complex64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--heads", nargs="+", required=True, help="caseseed:index")
    p.add_argument("--matrix", type=int, default=256)
    p.add_argument(
        "--masks",
        nargs="+",
        default=["R=2 1D equispaced", "R=3 1D equispaced"],
        choices=MASK_CLASSES + EQUISPACED_CLASSES,
    )
    p.add_argument("--cg-iters", type=int, default=40)
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    a = p.parse_args()
    subject = load_subject(a.data_dir / "train_volumes" / "niivue_FLAIR.nii.gz")
    print("| head | case | mask | true maps | product ESPIRiT | bart ecalib -m1 |")
    print("|---|---|---|---|---|---|")
    for head in a.heads:
        plan_seed, index = map(int, head.split(":"))
        spec = case_plan(subject, 4, (a.matrix, a.matrix), plan_seed)[index]
        case = make_case(
            subject, spec.slice_spec, spec.coils, spec.noise_level, spec.placement, spec.seed
        )
        ref = case.reference
        obj = object_region(ref)
        for mask_class in a.masks:
            mask = make_mask(mask_class, tuple(case.kspace.shape[-2:]), 0)
            y = case.kspace * mask
            scores = [
                psnr(ref, cg_sense(y, mask, maps, max_iter=a.cg_iters), obj)
                for maps in (case.maps_true, espirit_maps(y, mask), bart_maps(y))
            ]
            print(
                f"| {head} | {case.meta.name} | {mask_class} | "
                + " | ".join(f"{s:.2f}" for s in scores)
                + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
