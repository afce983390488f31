"""ESPIRiT on narrow calibration regions: the real 8-coil brain at 128 x 100 (as
benchmarks/calibrate_default.py crops it) with n = 5..12 fully sampled centre columns (or rows).

Per n and direction: the fraction of the object (> 10 % of the fully sampled reference's maximum)
inside the maps' support, the support's fraction of the image and the median map agreement with
the full-data maps on the object, for :func:`diffusion_core.espirit.espirit_maps` and for BART's
``ecalib -m1`` with its default 6 x 6 kernel and with the kernel ``kernel_shape`` picks.
``--old-espirit FILE`` (an older ``espirit.py``, e.g. from ``git show``) adds DDS reconstructions
of the R=8 1D masks of calibrate_default (seeds 100, 101: 9 columns) and of the generalization
benchmark (seeds 0, 1: 10 columns) with the old and the current maps: object PSNR, object in
support.

    python benchmarks/espirit_narrow.py --old-espirit /tmp/old_espirit.py
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization_cases import make_mask, real_brain_case  # noqa: E402
from diffusion_core.calibration import calibration_region, region_shape  # noqa: E402
from diffusion_core.espirit import espirit_maps, kernel_shape  # noqa: E402

BRAIN = ROOT.parent / "shared" / "data" / "eval" / "brain8ch_full_c_y_x.npy"


def agreement(maps: torch.Tensor, reference: torch.Tensor, region: torch.Tensor) -> float:
    """Median over region of the per-pixel |<m, r>| / (|m| |r|) over coils (0 where one is 0)."""
    num = (maps.conj() * reference).sum(0).abs()
    den = maps.abs().square().sum(0).sqrt() * reference.abs().square().sum(0).sqrt()
    return float((num / den.clamp_min(1e-12))[region].median())


def bart_maps(kspace: torch.Tensor, tmp: Path, *options: str) -> torch.Tensor | None:
    """BART ``ecalib -m1`` maps (c, y, x) of kspace (c, ky, kx); BART's dims are [kx, ky, 1, c].
    None where BART aborts (a calibration region smaller than its kernel)."""
    c, ny, nx = kspace.shape
    (tmp / "k.hdr").write_text(f"# Dimensions\n{nx} {ny} 1 {c}\n")
    kspace.numpy().astype(np.complex64).tofile(tmp / "k.cfl")
    done = subprocess.run(
        ["bart", "ecalib", "-m1", *options, str(tmp / "k"), str(tmp / "s")], capture_output=True
    )
    if done.returncode != 0:
        return None
    return torch.from_numpy(np.fromfile(tmp / "s.cfl", dtype=np.complex64).reshape(c, ny, nx))


def band_mask(shape: tuple[int, int], lines: int, rows: bool) -> torch.Tensor:
    """``lines`` centre columns (rows) plus every 8th one: the calibration region has ``lines``."""
    ny, nx = shape
    n = ny if rows else nx
    start = n // 2 - lines // 2
    lines_on = torch.zeros(n)
    lines_on[::8] = 1
    lines_on[max(start - 1, 0) : start + lines + 1] = 0  # keep the band's neighbours empty
    lines_on[start : start + lines] = 1
    mask = lines_on[:, None].expand(ny, nx) if rows else lines_on[None, :].expand(ny, nx)
    mask = mask.contiguous()
    if min(region_shape(calibration_region(mask), shape)) != lines:
        raise RuntimeError(f"band mask: expected a calibration region of {lines} lines")
    return mask


def scores(maps: torch.Tensor | None, full_maps: torch.Tensor, obj: torch.Tensor) -> str:
    if maps is None:
        return "fails | | "
    seen = maps.abs().sum(0) > 0
    return (
        f"{float(seen[obj].float().mean()):.3f} | {float(seen.float().mean()):.3f} | "
        f"{agreement(maps, full_maps, obj):.3f}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old-espirit", type=Path, help="an older espirit.py to compare DDS with")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    case = real_brain_case(BRAIN, size=128)
    full, ref = case.kspace, case.reference
    obj = ref.abs() > 0.1 * ref.abs().max()
    full_maps = espirit_maps(full)
    shape = (int(ref.shape[0]), int(ref.shape[1]))
    have_bart = shutil.which("bart") is not None
    print(
        "| band | lines | kernel | ours: object in support | support | agreement | "
        "BART 6x6: object | support | agreement | BART same kernel: object | support | agreement |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in (False, True):
            for lines in range(5, 13):
                mask = band_mask(shape, lines, rows)
                kspace = full * mask
                block = region_shape(calibration_region(mask), shape)
                kernel = kernel_shape((min(block[0], 24), min(block[1], 24)), 6)
                row = f"| {'rows' if rows else 'columns'} | {lines} | {kernel[0]}x{kernel[1]} | "
                row += scores(espirit_maps(kspace, mask), full_maps, obj)
                if have_bart:
                    row += " | " + scores(bart_maps(kspace, Path(tmp)), full_maps, obj)
                    k = f"{kernel[1]}:{kernel[0]}:1"  # BART: columns first
                    row += " | " + scores(bart_maps(kspace, Path(tmp), "-k", k), full_maps, obj)
                print(row + " |", flush=True)
    if args.old_espirit is not None:
        dds(args.old_espirit, case, obj)
    return 0


def dds(old_path: Path, case, obj: torch.Tensor) -> None:
    """DDS (25 NFE, K = 4, 5 CG) on the R=8 1D masks with the old and the current maps."""
    from diffusion_core.metrics import psnr
    from diffusion_core.priors import load_default_prior
    from diffusion_core.reconstruct import ReconConfig, reconstruct

    spec = importlib.util.spec_from_file_location("old_espirit", old_path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--old-espirit {old_path}: not a Python file")
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    denoiser = load_default_prior()
    cfg = ReconConfig(sampler="dds", nfe=25, num_samples=4, cg_iters=5)
    shape = (int(case.reference.shape[0]), int(case.reference.shape[1]))
    print("\n| R=8 1D mask seed | calibration columns | maps | object in support | PSNR dB |")
    print("|---|---|---|---|---|")
    for seed in (0, 1, 100, 101):
        mask = make_mask("R=8 1D random", shape, seed=seed)
        kspace = case.kspace * mask
        columns = region_shape(calibration_region(mask), shape)[1]
        for name, fn in (("old", old.espirit_maps), ("current", espirit_maps)):
            out = reconstruct(
                kspace,
                mask,
                denoiser,
                cfg,
                maps=fn(kspace, mask),
                generator=torch.Generator().manual_seed(1),
            )
            print(
                f"| {seed} | {columns} | {name} | {float(out.support[obj].float().mean()):.3f} | "
                f"{psnr(case.reference, out.mean, obj.numpy()):.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    raise SystemExit(main())
