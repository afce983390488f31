"""Can measured k-space that is held back tell, per scan, how much to trust the data (issue 13, item 5)?

For each held-out case of the generalization benchmark (seed 0), 20 % of the sampled entries
outside the calibration block are held back (whole columns for a 1D mask, points for a 2D one).
The product (DDS, 25 NFE, K = 2) runs with ``cg_iters`` 5 and 10 on all the data, and on the rest
(at ``--cv-nfe`` / ``--cv-samples``, by default the same);
the cross-validation score is the reduced chi-square of the held-back entries predicted by the
mean, ``mean |M_h F S x - y_h|^2 / (2 sigma^2)``. A per-scan rule works if the candidate with
the lower score is the one with the higher PSNR on the full data.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/kspace_cv.py --masks "R=8 2D Poisson" \\
        --json /tmp/cv.json

``--caches CG5 CG10``: instead, score the cases of two caches of ``benchmarks/calibrate_default.py``
(the same cases reconstructed with ``--cg-iters`` 5 and 10; other slices, coils and FOVs than the
benchmark's, at 128 x 128): the full-data PSNR comes from the caches, only the held-back runs are
made here. A check of a rule on cases it was not found on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization import DATA, build_cases  # noqa: E402
from benchmarks.generalization import parse_args as benchmark_args  # noqa: E402
from benchmarks.generalization_cases import MASK_CLASSES, make_mask  # noqa: E402
from diffusion_core.espirit import espirit_maps  # noqa: E402
from diffusion_core.metrics import psnr  # noqa: E402
from diffusion_core.priors import load_default_prior  # noqa: E402
from diffusion_core.reconstruct import (  # noqa: E402
    ReconConfig,
    estimate_noise_sigma,
    held_back_entries,
    reconstruct,
)
from diffusion_core.uncertainty import data_residual_ratio  # noqa: E402


def held_back_cv(kspace, mask, mask_class, maps, sigma, cg, args, denoiser) -> float:
    """The reduced chi-square of the held-back entries predicted by the mean of the run on the
    rest (``--cv-nfe``, ``--cv-samples``) with ``cg`` CG iterations; kspace (c, ky, kx) masked,
    sigma per real channel in its units."""
    held = held_back_entries(mask, args.fraction, 1234, columns="2D" not in mask_class)
    train = mask * (~held).float()
    cv_config = ReconConfig(nfe=args.cv_nfe, num_samples=args.cv_samples, cg_iters=cg)
    part = reconstruct(
        kspace * train, train, denoiser, cv_config, maps=maps,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    return data_residual_ratio(kspace, held, maps, part.mean, sigma)


def from_caches(args: argparse.Namespace, denoiser) -> list[dict[str, object]]:
    """Rows for the cases of the two ``--caches`` (cg_iters 5 and 10)."""
    caches = [torch.load(path, weights_only=True) for path in args.caches]
    rows = []
    for key, first in caches[0].items():
        mask_class = key.split("|")[1]
        if key not in caches[1] or mask_class not in args.masks:
            continue
        mask = (first["mask"] != 0).float()
        row: dict[str, object] = {"case": key.split("|")[-1], "mask": mask_class}
        for cg, cache in zip(args.cg_iters, caches, strict=True):
            r = cache[key]
            row[f"psnr_full_{cg}"] = psnr(r["ref"], r["mean"])
            row[f"cv_{cg}"] = held_back_cv(
                r["kspace"], mask, mask_class, r["maps"], float(r["noise"]), cg, args, denoiser
            )
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--masks", nargs="+", default=list(MASK_CLASSES), choices=MASK_CLASSES)
    parser.add_argument("--cg-iters", nargs="+", type=int, default=[5, 10])
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--cv-nfe", type=int, default=25, help="NFE of the held-back runs")
    parser.add_argument("--cv-samples", type=int, default=2, help="K of the held-back runs")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--caches", nargs=2, type=Path, help="calibrate_default caches made with cg_iters 5, 10"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    denoiser = load_default_prior()
    rows = from_caches(args, denoiser) if args.caches else from_benchmark(args, denoiser)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    first, last = args.cg_iters[0], args.cg_iters[-1]
    print(
        f"| case | mask | PSNR cg {last} - cg {first} | CV cg {first} / {last} | "
        f"{last} - {first} | agree |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        dp = r[f"psnr_full_{last}"] - r[f"psnr_full_{first}"]  # type: ignore[operator]
        dc = r[f"cv_{last}"] - r[f"cv_{first}"]  # type: ignore[operator]
        agree = "yes" if dp * dc < 0 else "no"
        print(
            f"| {r['case']} | {r['mask']} | {dp:+.2f} | {r[f'cv_{first}']:.4f} / "
            f"{r[f'cv_{last}']:.4f} | {dc:+.4f} | {agree} |"
        )


def from_benchmark(args: argparse.Namespace, denoiser) -> list[dict[str, object]]:
    """Rows for the generalization benchmark's held-out cases (seed 0)."""
    plan = ["--subjects", "niivue_FLAIR", "real", "--cases-per-subject", "4", "--size", "96"]
    cases = build_cases(
        benchmark_args(["--data-dir", str(args.data_dir), *plan, "--real-size", "128"])
    )
    rows = []
    for case in cases:
        for mask_class in args.masks:
            ref = case.reference
            mask = make_mask(mask_class, tuple(ref.shape[-2:]), 0)
            kspace = case.kspace * mask
            maps = espirit_maps(kspace, mask)
            sigma = estimate_noise_sigma(kspace, mask)
            row: dict[str, object] = {"case": case.meta.name, "mask": mask_class, "sigma": sigma}
            for cg in args.cg_iters:
                config = ReconConfig(nfe=25, num_samples=2, cg_iters=cg)
                start = time.time()
                full = reconstruct(
                    kspace, mask, denoiser, config, maps=maps,
                    generator=torch.Generator().manual_seed(0),
                )  # fmt: skip
                row[f"psnr_full_{cg}"] = psnr(ref, full.mean)
                row[f"cv_{cg}"] = held_back_cv(
                    kspace, mask, mask_class, maps, sigma, cg, args, denoiser
                )
                row[f"seconds_{cg}"] = time.time() - start
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
