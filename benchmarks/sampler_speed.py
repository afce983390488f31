"""Time each posterior sampler on a 256x256 8-coil slice with the default network (random weights).

For each sampler: NFE per sample, median seconds per slice (one posterior sample, maps given),
seconds per extra posterior sample (K=2 minus K=1), seconds per NFE, the time at the NFE of the
paper, and the peak resident memory of a fresh process running it. Each sampler runs in its own
subprocess so that peak memory is its own.

    python benchmarks/sampler_speed.py               # all samplers
    python benchmarks/sampler_speed.py --runs 3 --samplers dds
    python benchmarks/sampler_speed.py --device cuda --size 320 --coils 15 --samplers dds dds+bf16

Up to 8 coils the slice is the real 8-coil brain (ESPIRiT maps); more coils are simulated: the
brain's root-sum-of-squares image times smooth ring-coil sensitivities (the same operator sizes).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusion_core.reconstruct import ReconConfig  # noqa: E402

# NFE used here, and the NFE of the paper's setting (for the extrapolated column)
SETTINGS = {
    "dds": (50, 50),  # Chung, Lee, Ye 2024: 49-100 NFE
    "dds+bf16": (50, 50),  # the same with the network under bfloat16 autocast
    "dps": (100, 1000),  # Chung et al. 2023: 1000 steps
    "song": (200, 2000),  # Song et al. 2022: 1000 levels x (P + C)
    "score_mri": (200, 2000),  # Chung & Ye 2022: 1000 levels x (P + C) (up to 2000 x 6)
    "score_mri_ssos": (20, 2000),  # per coil: 8 network images per NFE
}


def _slice(size: int = 256, coils: int = 8):
    """The 8-coil brain zero-padded in k-space to size x size, R=4 random columns (ACS 20), maps.

    More than 8 coils: the brain's root-sum-of-squares image with simulated ring-coil maps.
    """
    import numpy as np

    from benchmarks.prior_quality import EVAL, simulated_maps
    from diffusion_core.espirit import espirit_maps
    from diffusion_core.fft import fft2c, ifft2c
    from diffusion_core.masks import random_columns_mask

    k = torch.from_numpy(np.load(EVAL)).to(torch.complex64)
    c, ny, nx = k.shape
    if size < max(ny, nx):
        raise SystemExit(f"--size {size}: expected at least the brain's matrix, {max(ny, nx)}")
    full = torch.zeros(c, size, size, dtype=torch.complex64)
    oy, ox = (size - ny) // 2, (size - nx) // 2
    full[:, oy : oy + ny, ox : ox + nx] = k
    mask = random_columns_mask((size, size), 4.0, 20, seed=0)
    if coils <= c:
        kspace = full[:coils] * mask
        return kspace, mask, espirit_maps(kspace, mask)
    maps = simulated_maps((size, size), coils)
    rss = ifft2c(full).abs().pow(2).sum(0).sqrt().to(torch.complex64)
    return fft2c(maps * rss) * mask, mask, maps


def _one(name: str, runs: int, size: int, coils: int, device: str, cg_iters: int) -> dict:
    from diffusion_core.denoiser import PreconditionedDenoiser
    from diffusion_core.networks import UNet, UNetConfig
    from diffusion_core.reconstruct import reconstruct

    kspace, mask, maps = (t.to(device) for t in _slice(size, coils))
    net = UNet(UNetConfig(), generator=torch.Generator().manual_seed(0)).eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    sampler = name.removesuffix("+bf16")
    den = PreconditionedDenoiser(net, autocast_bf16=name.endswith("+bf16"))
    nfe, paper_nfe = SETTINGS[name]

    def timed(k: int) -> float:
        cfg = ReconConfig(sampler=sampler, nfe=nfe, num_samples=k, cg_iters=cg_iters)
        generator = torch.Generator(device=device).manual_seed(0)
        t = time.perf_counter()
        reconstruct(kspace, mask, den, cfg, maps=maps, generator=generator)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t

    if device.startswith("cuda"):
        timed(1)  # CUDA context, cuFFT plans and kernel selection

    one = [timed(1) for _ in range(runs)]
    two = timed(2)
    med = statistics.median(one)
    real_nfe = ReconConfig(sampler=sampler, nfe=nfe).steps * (
        2 if sampler in ("song", "score_mri", "score_mri_ssos") else 1
    ) - (1 if sampler in ("song", "score_mri", "score_mri_ssos") else 0)
    return {
        "sampler": name,
        "nfe": real_nfe,
        "s_per_slice": med,
        "s_extra_sample": two - med,
        "s_per_nfe": med / real_nfe,
        "paper_nfe": paper_nfe,
        "s_at_paper_nfe": med / real_nfe * paper_nfe,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": (
            torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
        ),
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--samplers", nargs="*", default=list(SETTINGS))
    ap.add_argument("--runs", type=int, default=3, help="runs of K=1 for the median")
    ap.add_argument("--size", type=int, default=256, help="matrix size (square)")
    ap.add_argument("--coils", type=int, default=8, help="receive coils (> 8: simulated maps)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument(
        "--cg-iters",
        type=int,
        default=ReconConfig().cg_iters,
        help="CG iterations per data-consistency step",
    )
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(
            json.dumps(_one(args.one, args.runs, args.size, args.coils, args.device, args.cg_iters))
        )
        return
    rows = []
    for s in args.samplers:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                s,
                "--runs",
                str(args.runs if s.startswith("dds") else 1),
                *("--size", str(args.size), "--coils", str(args.coils), "--device", args.device),
                *("--cg-iters", str(args.cg_iters)),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"done {s}", file=sys.stderr)
    head = f"{'sampler':15s} {'NFE':>5s} {'s/slice':>8s} {'s/extra':>8s} {'s/NFE':>6s} {'paper NFE':>9s} {'s@paper':>8s} {'peak MB':>8s}"
    on_gpu = args.device.startswith("cuda")
    where = rows[0]["device"] if on_gpu else f"{rows[0]['threads']} CPU threads"
    memory = "peak_gpu_mb" if on_gpu else "peak_rss_mb"
    print(
        f"{args.size}x{args.size}, {args.coils} coils, default U-Net ({where}), maps given, "
        f"cg_iters {args.cg_iters}, "
        f"median of runs{', peak MB = CUDA memory allocated' if on_gpu else ''}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['sampler']:15s} {r['nfe']:5d} {r['s_per_slice']:8.2f} {r['s_extra_sample']:8.2f} "
            f"{r['s_per_nfe']:6.3f} {r['paper_nfe']:9d} {r['s_at_paper_nfe']:8.0f} {r[memory]:8.0f}"
        )


if __name__ == "__main__":
    main()
