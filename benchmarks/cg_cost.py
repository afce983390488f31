"""Seconds of one network evaluation against one DDS data-consistency step at several cg_iters.

The shipped prior on one (1, n, n) image and ``SenseDataConsistency.prox`` with c coils (random
maps and data: only the time matters), median of ``--runs``, one thread by default.

    PYTHONPATH=$PWD nice -n 10 python benchmarks/cg_cost.py --size 256 --coils 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusion_core.data_consistency import SenseDataConsistency  # noqa: E402


def _median_seconds(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--coils", type=int, default=8)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cg-iters", type=int, nargs="+", default=[5, 10, 15, 20])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from diffusion_core.checkpoint import load_checkpoint
    from diffusion_core.priors import DEFAULT_PRIOR_PATH

    denoiser = load_checkpoint(Path(DEFAULT_PRIOR_PATH), device=torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    n, c = args.size, args.coils
    x = torch.randn((1, n, n), dtype=torch.complex64, generator=g)
    maps = torch.randn((c, n, n), dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(0).sqrt()
    mask = (torch.rand((n, n), generator=g) < 0.25).float()
    y = torch.randn((c, n, n), dtype=torch.complex64, generator=g) * mask
    with torch.no_grad():
        net = _median_seconds(lambda: denoiser(x, 1.0), args.runs)
    print(f"{n}x{n}, {c} coils, {args.threads} thread(s): network evaluation {net:.3f} s")
    for k in args.cg_iters:
        dc = SenseDataConsistency(maps, mask, y, 0.01, cg_iters=k)
        prox = _median_seconds(lambda dc=dc: dc.prox(x, 10.0), args.runs)
        print(
            f"  prox, cg_iters {k:2d}: {prox:.3f} s ({100 * prox / net:.0f} % of a network evaluation)"
        )


if __name__ == "__main__":
    main()
