"""Classical baselines on the real 8-coil brain: zero-filled, CG-SENSE and L1-wavelet, beside BART.

Cases: R=4 and R=8 random columns (20 / 16 ACS columns) and R=8 2D Poisson-disc (24x24 calibration).
Coil maps come from the calibration region of the undersampled data only (our ESPIRiT; BART's rows
use ``bart ecalib -m1`` on the same data). Reference: SENSE combination of the full k-space with
ESPIRiT maps from the full data. Metrics on magnitudes after the best scalar fit
(:mod:`diffusion_core.metrics`). Regularised methods are reported at the best of a small grid of weights.

    python benchmarks/classical_baselines.py [--data PATH] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.prior_quality import EVAL as DATA  # noqa: E402
from benchmarks.prior_quality import Row  # noqa: E402  (the row of every quality table)
from diffusion_core.classical import cg_sense, l1_wavelet, zero_filled  # noqa: E402
from diffusion_core.espirit import espirit_maps  # noqa: E402
from diffusion_core.masks import poisson_disc_mask, random_columns_mask  # noqa: E402
from diffusion_core.metrics import psnr, ssim  # noqa: E402

L1_WEIGHTS = (0.0005, 0.001, 0.002, 0.005, 0.01)
CG_WEIGHTS = (0.0, 0.01, 0.05, 0.1)
BART_L1_WEIGHTS = ("0.001", "0.002", "0.005", "0.01", "0.02")
BART_L2_WEIGHTS = ("0", "0.01", "0.05", "0.1")

log = logging.getLogger("classical_baselines")


def timed(
    fn: Callable[..., torch.Tensor], *args: object, **kwargs: object
) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def best_of(
    case: str, method: str, ref: torch.Tensor, runs: dict[str, tuple[torch.Tensor, float]]
) -> Row:
    """The run with the highest PSNR among weights; seconds are that run's."""
    scored = {w: (psnr(ref, img), img, s) for w, (img, s) in runs.items()}
    weight = max(scored, key=lambda w: scored[w][0])
    value, img, seconds = scored[weight]
    return Row(case, method, value, ssim(ref, img), seconds, weight)


def ours(case: str, kspace: torch.Tensor, mask: torch.Tensor, ref: torch.Tensor) -> list[Row]:
    maps, t_maps = timed(espirit_maps, kspace, mask)
    zf, t_zf = timed(zero_filled, kspace, mask, maps)
    rows = [Row(case, "ESPIRiT maps (ACS only)", float("nan"), float("nan"), t_maps)]
    rows.append(Row(case, "zero-filled", psnr(ref, zf), ssim(ref, zf), t_zf))
    cg = {str(w): timed(cg_sense, kspace, mask, maps, lam=w) for w in CG_WEIGHTS}
    rows.append(best_of(case, "CG-SENSE (30 it)", ref, cg))
    l1 = {str(w): timed(l1_wavelet, kspace, mask, maps, lam=w) for w in L1_WEIGHTS}
    rows.append(best_of(case, "L1-wavelet FISTA (100 it)", ref, l1))
    return rows


def write_cfl(stem: Path, array: np.ndarray) -> None:
    """(c, ky, kx) complex -> BART dims [kx, ky, 1, c]."""
    stem.with_suffix(".hdr").write_text(
        f"# Dimensions\n{array.shape[2]} {array.shape[1]} 1 {array.shape[0]}\n"
    )
    np.ascontiguousarray(array, dtype=np.complex64).tofile(stem.with_suffix(".cfl"))


def read_image(stem: Path, shape: tuple[int, int]) -> torch.Tensor:
    return torch.from_numpy(
        np.fromfile(stem.with_suffix(".cfl"), dtype=np.complex64).reshape(shape)
    )


def bart_rows(case: str, kspace: torch.Tensor, ref: torch.Tensor) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_cfl(d / "k", kspace.numpy())

        def run(*args: str) -> float:
            start = time.perf_counter()
            subprocess.run(["bart", *args], check=True, capture_output=True)
            return time.perf_counter() - start

        t_maps = run("ecalib", "-m1", str(d / "k"), str(d / "s"))

        def pics(flag: str, weight: str) -> tuple[torch.Tensor, float]:
            seconds = run(
                "pics", "-S", flag, "-r", weight, str(d / "k"), str(d / "s"), str(d / "x")
            )
            return read_image(d / "x", (ref.shape[-2], ref.shape[-1])), seconds

        l2 = {w: pics("-l2", w) for w in BART_L2_WEIGHTS}
        l1 = {w: pics("-l1", w) for w in BART_L1_WEIGHTS}
        return [
            Row(case, "bart ecalib -m1", float("nan"), float("nan"), t_maps),
            best_of(case, "bart pics -l2", ref, l2),
            best_of(case, "bart pics -l1", ref, l1),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    full = torch.from_numpy(np.load(args.data))
    shape = (full.shape[-2], full.shape[-1])
    ref = zero_filled(full, torch.ones(shape), espirit_maps(full))
    cases = {
        "R=4 1D (20 ACS)": random_columns_mask(shape, 4, 20, args.seed),
        "R=8 1D (16 ACS)": random_columns_mask(shape, 8, 16, args.seed),
        "R=8 2D Poisson (24x24)": poisson_disc_mask(shape, 8, 24, args.seed),
    }
    have_bart = shutil.which("bart") is not None
    rows: list[Row] = []
    for case, mask in cases.items():
        kspace = full * mask
        log.info("%s: sampled fraction %.3f", case, float(mask.mean()))
        rows += ours(case, kspace, mask, ref)
        if have_bart:
            rows += bart_rows(case, kspace, ref)
    print(
        f"\ntorch threads: {torch.get_num_threads()}; PSNR/SSIM vs full-data SENSE, best scalar fit"
    )
    print(f"{'case':<24} {'method':<26} {'PSNR dB':>8} {'SSIM':>6} {'seconds':>8}  weight")
    for r in rows:
        quality = f"{r.psnr:8.2f} {r.ssim:6.3f}" if np.isfinite(r.psnr) else f"{'-':>8} {'-':>6}"
        print(f"{r.case:<24} {r.method:<26} {quality} {r.seconds:8.2f}  {r.setting}")
    if not have_bart:
        print("(bart not installed: BART rows skipped)")


if __name__ == "__main__":
    main()
