"""One ESPIRiT map set against auto (two where the second covers >= 2 %), side by side, on the
calibration cases of ``benchmarks/calibrate_default.py`` whose second set switches on.

Per case (replay defaults: K = 4, 25 NFE, the FOV rule, the simulated noise as a noise scan
gives it, the shipped card's std calibration): PSNR over the object, 2-std coverage and the data
misfit rho, with ``map_sets`` 1 and 0 and the same seed. Writes a JSON after each case.

    PYTHONPATH=$PWD python benchmarks/two_sets_ab.py --matrix 128 --json benchmarks/results/two_sets_ab128_partial.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.calibrate_default import cases  # noqa: E402
from benchmarks.prior_quality import within_2std  # noqa: E402
from diffusion_core.checkpoint import read_card  # noqa: E402
from diffusion_core.data_consistency import image_support  # noqa: E402
from diffusion_core.espirit import espirit_map_sets  # noqa: E402
from diffusion_core.metrics import object_region, psnr  # noqa: E402
from diffusion_core.priors import DEFAULT_PRIOR_PATH, load_default_prior  # noqa: E402
from diffusion_core.reconstruct import TWO_SET_FRACTION, ReconConfig, reconstruct  # noqa: E402
from diffusion_core.uncertainty import entries_from_card  # noqa: E402

MASKS = ("R=4 1D random", "R=8 1D random", "R=8 2D Poisson")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--matrix", type=int, default=128)
    p.add_argument("--volume-cases", type=int, default=8)
    p.add_argument("--masks", nargs="+", default=list(MASKS), choices=MASKS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    denoiser = load_default_prior()
    calibration = entries_from_card(read_card(DEFAULT_PRIOR_PATH))
    rows = []
    for mask_class in args.masks:
        for partial, edge in ((True, False), (False, True), (False, False)):
            plan = cases(args.matrix, args.volume_cases, mask_class, partial, edge)
            for i, (name, _, kspace, mask, ref, noise) in enumerate(plan):
                first, second = espirit_map_sets(kspace, mask)
                support = image_support(first)
                share = float(((second.abs().sum(0) > 0) & support).sum() / support.sum())
                if share < TWO_SET_FRACTION:
                    continue
                noise_cov = (
                    None
                    if noise is None
                    else 2 * noise**2 * torch.eye(kspace.shape[0], dtype=torch.complex64)
                )
                res = {}
                for sets in (1, 0):
                    cfg = ReconConfig(
                        nfe=25,
                        num_samples=4,
                        cg_iters=5,
                        cg_iters_inside=10,
                        cg_iters_cut=3,
                        map_sets=sets,
                        calibration=calibration,
                    )
                    out = reconstruct(
                        kspace,
                        mask,
                        denoiser,
                        cfg,
                        noise_cov=noise_cov,
                        generator=torch.Generator().manual_seed(i),
                    )
                    res[sets] = (
                        psnr(ref, out.mean, object_region(ref)),
                        within_2std(ref, out.mean, out.std),
                        out.cg_iters,
                        out.residual_ratio,
                    )
                row = {
                    "case": name,
                    "mask": mask_class,
                    "share": share,
                    "p1": res[1][0],
                    "p2": res[0][0],
                    "c1": res[1][1],
                    "c2": res[0][1],
                    "cg": res[1][2],
                    "rho1": res[1][3],
                    "rho2": res[0][3],
                }
                rows.append(row)
                print(
                    f"{name} | {mask_class} | share {share:.2f} | cg {row['cg']} | PSNR "
                    f"{row['p1']:.2f} -> {row['p2']:.2f} | coverage {row['c1']:.3f} -> "
                    f"{row['c2']:.3f} | rho {row['rho1']:.2f} -> {row['rho2']:.2f}",
                    flush=True,
                )
                args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
