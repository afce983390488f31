"""A phase-encode FOV smaller than the head: the ESPIRiT demo's small-FOV 8-coil brain, one ESPIRiT
map set against two (soft SENSE), the product against BART's ``ecalib -m1`` / ``-m2`` + ``pics``.

The data (``../shared/data/eval/brain8ch_smallfov_undersampled_c_y_x.npy``: 320 x 168, every 2nd
phase-encode line plus a fully sampled centre) have no fully sampled reference, so quality is
scored on k-space the reconstructions never saw: every ``--hold``-th sampled phase-encode line
outside the calibration block is held back, each method reconstructs from the rest, and the
score is the reduced chi-square of its prediction of the held-back lines,
mean |F (S1 x1 + S2 x2) - y|^2 / (2 sigma^2), sigma the noise per real channel that the product
estimates from the k-space periphery (about 1 where a method predicts unseen data to the noise;
folds that a model cannot represent leave it well above). The data misfit on the lines used is
also printed.

    PYTHONPATH=$PWD python benchmarks/small_fov.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusion_core.calibration import calibration_region  # noqa: E402
from diffusion_core.fft import fft2c  # noqa: E402
from diffusion_core.priors import load_default_prior  # noqa: E402
from diffusion_core.reconstruct import ReconConfig, estimate_noise_sigma, reconstruct  # noqa: E402
from gadget.config import GadgetConfig  # noqa: E402
from tests.diffusion_core.bart_io import read_cfl, write_cfl  # noqa: E402


def held_back(mask: torch.Tensor, every: int) -> torch.Tensor:
    """(ky, kx) bool: every ``every``-th sampled phase-encode column outside the calibration block."""
    _, cols = calibration_region(mask)
    sampled = torch.nonzero(mask.bool().any(0)).flatten().tolist()
    outside = [c for c in sampled if not cols.start <= c < cols.stop]
    held = torch.zeros_like(mask, dtype=torch.bool)
    held[:, outside[::every]] = True
    return held & mask.bool()


def chi2(model_k: torch.Tensor, kspace: torch.Tensor, where: torch.Tensor, sigma: float) -> float:
    res = (model_k - kspace)[:, where]
    return float(res.abs().square().double().mean() / (2 * sigma**2))


def bart_model(kspace: np.ndarray, sets: int, weight: float, work: Path) -> np.ndarray:
    """``ecalib -mM`` and ``pics -S -l1 -r w`` (-S: the image in the data's scale): the coil
    images (c, y, x) its maps and images predict."""
    write_cfl(work / "k", kspace)
    run = {"check": True, "capture_output": True}
    subprocess.run(["bart", "ecalib", f"-m{sets}", work / "k", work / "s"], **run)
    subprocess.run(["bart", "pics", "-S", "-l1", "-r", f"{weight:g}", work / "k", work / "s", work / "x"], **run)  # fmt: skip
    maps, image = (
        read_cfl(work / "s"),
        read_cfl(work / "x"),
    )  # (M, c, y, x) or (c, y, x); (M, y, x) or (y, x)
    if sets == 1:
        return maps * image[None]
    return (maps * image[:, None]).sum(0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--hold", type=int, default=10, help="hold back every N-th outer line")
    p.add_argument("--l1-weights", type=float, nargs="+", default=[0.001, 0.003, 0.01])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    full = torch.from_numpy(
        np.load(args.data_dir / "eval" / "brain8ch_smallfov_undersampled_c_y_x.npy")
    )
    mask = (full.abs().sum(0) > 0).float()
    held = held_back(mask, args.hold)
    used = mask.bool() & ~held
    kspace = full * used
    sigma = estimate_noise_sigma(kspace, used.float())
    defaults = GadgetConfig()
    denoiser = load_default_prior()
    rows = []
    for sets in (1, 0):
        cfg = ReconConfig(
            nfe=defaults.nfe,
            num_samples=defaults.num_samples,
            cg_iters=defaults.cg_iters,
            cg_iters_inside=defaults.cg_iters_inside,
            cg_iters_cut=defaults.cg_iters_cut,
            map_sets=sets,
        )
        start = time.perf_counter()
        out = reconstruct(kspace, used.float(), denoiser, cfg, generator=torch.Generator())
        seconds = time.perf_counter() - start
        assert out.model is not None
        k = fft2c(out.model)
        label = f"product, map_sets {sets} ({out.map_sets} used)"
        rows.append((label, chi2(k, full, held, sigma), chi2(k, full, used, sigma), seconds))
    with tempfile.TemporaryDirectory() as tmp:
        for sets in (1, 2):
            best = None
            for w in args.l1_weights:
                start = time.perf_counter()
                coil = torch.from_numpy(bart_model(kspace.numpy(), sets, w, Path(tmp)))
                seconds = time.perf_counter() - start
                k = fft2c(coil)
                row = (f"BART ecalib -m{sets}, pics -l1 -r {w:g}", chi2(k, full, held, sigma),
                       chi2(k, full, used, sigma), seconds)  # fmt: skip
                best = row if best is None or row[1] < best[1] else best
            assert best is not None
            rows.append(best)
    print(f"held back: {int(held.any(0).sum())} of {int(mask.bool().any(0).sum())} sampled lines; "
          f"noise sigma {sigma:.4g} per real channel")  # fmt: skip
    print("\n| method | held-back lines, reduced chi-square | lines used | s |")
    print("|---|---|---|---|")
    for label, h, u, s in rows:
        print(f"| {label} | {h:.3f} | {u:.3f} | {s:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
