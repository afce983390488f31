"""DPS step size (zeta) sweep on the real 8-coil brain at R=4 with the shipped prior.

    python benchmarks/dps_step_sweep.py --nfe 50 --zeta 1 5 10 20

Prints PSNR of one posterior sample per zeta (reference: SENSE combination of the full data).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusion_core.classical import zero_filled  # noqa: E402
from diffusion_core.espirit import espirit_maps  # noqa: E402
from diffusion_core.masks import random_columns_mask  # noqa: E402
from diffusion_core.metrics import psnr  # noqa: E402
from diffusion_core.priors import load_default_prior  # noqa: E402
from diffusion_core.reconstruct import ReconConfig, reconstruct  # noqa: E402

EVAL = ROOT.parent / "shared" / "data" / "eval" / "brain8ch_full_c_y_x.npy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nfe", type=int, default=50)
    parser.add_argument("--zeta", type=float, nargs="+", default=[1.0, 5.0, 10.0, 20.0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    kspace = torch.from_numpy(np.load(EVAL)).to(args.device)
    full = torch.ones(kspace.shape[-2:], device=args.device)
    reference = zero_filled(kspace, full, espirit_maps(kspace))
    mask = random_columns_mask(kspace.shape[-2:], 4, 20, seed=0).to(args.device)
    denoiser = load_default_prior(args.device)
    print("| zeta | NFE | PSNR dB | seconds |\n|---|---|---|---|")
    for zeta in args.zeta:
        started = time.perf_counter()
        config = ReconConfig(sampler="dps", nfe=args.nfe, num_samples=1, zeta=zeta)
        result = reconstruct(
            kspace * mask, mask, denoiser, config, generator=torch.Generator().manual_seed(0)
        )
        seconds = time.perf_counter() - started
        print(f"| {zeta:g} | {args.nfe} | {psnr(reference, result.mean):.2f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
