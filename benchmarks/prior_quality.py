"""Quality of the shipped prior: posterior means of every sampler beside the classical baselines.

Cases: the real fully sampled 8-coil brain (``../shared/data/eval``) undersampled with 1D random
column masks at R=4 (20 ACS columns) and R=8 (16 ACS columns) and a 2D Poisson-disc mask at R=8
(24x24 calibration); coil maps from the calibration region only (ESPIRiT). Reference: SENSE
combination of the full k-space with maps from the full data. Also a held-out training-style
subject (the validation brain of the default prior, an axial slice) with simulated coil maps,
a smooth phase and complex noise, at R=4.

Rows: zero-filled, CG-SENSE and L1-wavelet (each at the best of several weights), and the
posterior mean of each sampler (K samples) with its seconds per slice and the calibration of its
uncertainty: the fraction of object pixels whose magnitude error is within 2 posterior standard
deviations (0.95 would be a calibrated Gaussian). Metrics: :mod:`diffusion_core.metrics`
(magnitudes after the best scalar fit). PSNR is given over the whole image and over the object
only (pixels above 10 % of the reference's maximum, same fit and peak): the whole image also
scores how a method treats the noise floor of the reference's background.

    python benchmarks/prior_quality.py                       # everything, default prior
    python benchmarks/prior_quality.py --device cuda --samples 8 --figure benchmarks/figures/quality.png
    python benchmarks/prior_quality.py --downscale 2 --samplers dds --nfe 10 --samples 2   # quick
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusion_core.classical import cg_sense, l1_wavelet, zero_filled  # noqa: E402
from diffusion_core.espirit import espirit_maps  # noqa: E402
from diffusion_core.fft import fft2c, ifft2c  # noqa: E402
from diffusion_core.masks import poisson_disc_mask, random_columns_mask  # noqa: E402
from diffusion_core.metrics import object_region, psnr, ssim  # noqa: E402
from diffusion_core.reconstruct import ReconConfig, reconstruct  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
EVAL = DATA / "eval" / "brain8ch_full_c_y_x.npy"
HELD_OUT = DATA / "train_volumes" / "niivue_FLAIR.nii.gz"
CG_WEIGHTS = (0.0, 0.01, 0.05)
L1_WEIGHTS = (0.0005, 0.001, 0.002, 0.005, 0.01)
# Network evaluations per sample (as in benchmarks/sampler_speed.py)
SAMPLER_NFE = {"dds": 50, "dps": 100, "song": 200, "score_mri": 200}

log = logging.getLogger("prior_quality")


@dataclass(frozen=True)
class Case:
    name: str
    kspace: torch.Tensor  # (c, ky, kx) undersampled
    mask: torch.Tensor  # (ky, kx)
    reference: torch.Tensor  # (y, x) complex


@dataclass(frozen=True)
class Row:
    case: str
    method: str
    psnr: float
    ssim: float
    seconds: float
    setting: str = ""
    within_2std: float = math.nan
    psnr_object: float = math.nan  # over the object (metrics.object_region), not the background


def image_row(
    case: str, method: str, ref: torch.Tensor, img: torch.Tensor, seconds: float, setting: str = ""
) -> Row:
    """A row with PSNR (whole image and object only) and SSIM of ``img`` against ``ref``."""
    return Row(
        case,
        method,
        psnr(ref, img),
        ssim(ref, img),
        seconds,
        setting,
        psnr_object=psnr(ref, img, object_region(ref)),
    )


def downscale(kspace: torch.Tensor, factor: int) -> torch.Tensor:
    """Central 1/factor of k-space in each direction (a lower-resolution acquisition of the same FOV).

    The calibration sizes stay those of the full data (a larger fraction of the smaller k-space).
    """
    if factor == 1:
        return kspace
    ny, nx = kspace.shape[-2:]
    cy, cx = ny // factor, nx // factor
    y0, x0 = (ny - cy) // 2, (nx - cx) // 2
    return kspace[..., y0 : y0 + cy, x0 : x0 + cx].contiguous() / factor


def crop_fov(kspace: torch.Tensor, size: int | None) -> torch.Tensor:
    """k-space of the central size x size pixels of each coil image (same resolution, smaller FOV)."""
    if size is None:
        return kspace
    images = ifft2c(kspace)
    ny, nx = images.shape[-2:]
    y0, x0 = max(ny - size, 0) // 2, max(nx - size, 0) // 2
    return fft2c(images[..., y0 : y0 + size, x0 : x0 + size].contiguous())


def eval_brain_cases(
    path: Path, factor: int = 1, seed: int = 0, crop: int | None = None
) -> list[Case]:
    """R=4 / R=8 random columns and R=8 Poisson-disc masks of the fully sampled 8-coil brain."""
    full = torch.from_numpy(np.load(path)).to(torch.complex64)
    full = downscale(crop_fov(full, crop), factor)
    shape = (full.shape[-2], full.shape[-1])
    reference = zero_filled(full, torch.ones(shape), espirit_maps(full))
    masks = {
        "R=4 1D random (20 ACS)": random_columns_mask(shape, 4.0, 20, seed),
        "R=8 1D random (16 ACS)": random_columns_mask(shape, 8.0, 16, seed),
        "R=8 2D Poisson (24x24)": poisson_disc_mask(shape, 8.0, 24, seed),
    }
    return [Case(name, full * m, m, reference) for name, m in masks.items()]


def simulated_maps(shape: tuple[int, int], coils: int = 8) -> torch.Tensor:
    """(coils, y, x) smooth complex sensitivities of coils on a ring around the object."""
    y, x = torch.meshgrid(
        torch.linspace(-1, 1, shape[0]), torch.linspace(-1, 1, shape[1]), indexing="ij"
    )
    angles = torch.arange(coils) * (2 * math.pi / coils)
    cy, cx = 1.3 * torch.sin(angles), 1.3 * torch.cos(angles)
    dist2 = (y - cy[:, None, None]) ** 2 + (x - cx[:, None, None]) ** 2
    maps = torch.polar(torch.exp(-dist2 / 1.5), angles[:, None, None] + 0.5 * x + 0.3 * y)
    return maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()


def held_out_case(path: Path, factor: int = 1, noise: float = 0.01, seed: int = 0) -> Case:
    """Central axial slice of a held-out volume, smooth phase, 8 simulated coils, noise, R=4."""
    from diffusion_core.normalization import magnitude_scale
    from diffusion_core.training.data import smooth_random_phase
    from diffusion_core.training.volumes import load_volume, resample_isotropic

    volume, zooms = load_volume(path)
    volume = resample_isotropic(volume, zooms, 1.0)
    axial = torch.from_numpy(np.ascontiguousarray(volume[:, :, volume.shape[2] // 2].T[::-1]))
    g = torch.Generator().manual_seed(seed)
    phase = smooth_random_phase(1, tuple(axial.shape), 4, 1.0, g)[0]  # type: ignore[arg-type]
    image = torch.polar(axial / magnitude_scale(axial), phase)
    image = ifft2c(downscale(fft2c(image), factor))
    maps = simulated_maps((image.shape[-2], image.shape[-1]))
    clean = fft2c(maps * image)
    noisy = clean + noise * torch.complex(
        torch.randn(clean.shape, generator=g), torch.randn(clean.shape, generator=g)
    )
    shape = (image.shape[-2], image.shape[-1])
    mask = random_columns_mask(shape, 4.0, 20, seed)
    return Case(
        f"held-out {path.name.split('.')[0]} R=4 (sim. coils, noise)", noisy * mask, mask, image
    )


def _timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def classical_rows(case: Case, maps: torch.Tensor) -> tuple[list[Row], dict[str, torch.Tensor]]:
    """Zero-filled, and CG-SENSE / L1-wavelet at the best of their weights; also the images."""
    k, m, ref = case.kspace, case.mask, case.reference
    zf, t = _timed(lambda: zero_filled(k, m, maps))
    rows = [image_row(case.name, "zero-filled", ref, zf, t)]
    images = {"zero-filled": zf}
    solvers: list[tuple[str, Callable[..., torch.Tensor], tuple[float, ...]]] = [
        ("CG-SENSE", cg_sense, CG_WEIGHTS),
        ("L1-wavelet", l1_wavelet, L1_WEIGHTS),
    ]
    for method, solver, weights in solvers:
        runs = {w: _timed(partial(solver, k, m, maps, lam=w)) for w in weights}
        best = max(runs, key=lambda w: psnr(ref, runs[w][0]))
        img, t = runs[best]
        rows.append(image_row(case.name, method, ref, img, t, f"lam={best:g}"))
        images[method] = img
    return rows, images


def within_2std(ref: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> float:
    """Fraction of object pixels (metrics.object_region) with | a|mean| - |ref| | <= 2 a std.

    ``a`` is the least-squares scalar fitting |mean| to |ref| (the metrics' scaling rule).
    """
    r, m, s = ref.abs().double(), mean.abs().double(), std.double()
    a = float((m * r).sum() / (m * m).sum().clamp_min(1e-30))
    inside = torch.from_numpy(object_region(ref))
    return float(((a * m - r).abs() <= 2 * a * s)[inside].double().mean())


def sampler_row(
    case: Case, maps: torch.Tensor, denoiser, config: ReconConfig, device: torch.device, seed: int
) -> tuple[Row, torch.Tensor, torch.Tensor]:
    """Posterior mean of one sampler: its row, mean image and std image (on the CPU)."""
    k, m, mp = case.kspace.to(device), case.mask.to(device), maps.to(device)
    g = torch.Generator(device).manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = reconstruct(k, m, denoiser, config, maps=mp, generator=g)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    mean, std = result.mean.cpu(), result.std.cpu()
    ref = case.reference
    setting = f"nfe={config.nfe} K={config.num_samples}"
    if config.sampler == "dds" and config.dc_scale != ReconConfig().dc_scale:
        setting += f" dc_scale={config.dc_scale:g}"
    row = replace(
        image_row(case.name, f"{config.sampler} (posterior mean)", ref, mean, seconds, setting),
        # one sample has no spread to calibrate
        within_2std=within_2std(ref, mean, std) if config.num_samples > 1 else math.nan,
    )
    return row, mean, std


def print_table(rows: list[Row]) -> None:
    print("| case | method | PSNR dB | PSNR dB, object | SSIM | s/slice | within 2 std | setting |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cal = "" if math.isnan(r.within_2std) else f"{r.within_2std:.2f}"
        print(
            f"| {r.case} | {r.method} | {r.psnr:.2f} | {r.psnr_object:.2f} | {r.ssim:.3f} "
            f"| {r.seconds:.2f} | {cal} | {r.setting} |"
        )


def save_figure(panels: list[tuple[str, dict[str, torch.Tensor]]], path: Path) -> None:
    """Rows: cases; columns: reference, zero-filled, L1-wavelet, posterior mean, 5 x std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ["reference", "zero-filled", "L1-wavelet", "posterior mean", "posterior std (x5)"]
    fig, axes = plt.subplots(
        len(panels), len(columns), figsize=(2.2 * len(columns), 2.6 * len(panels))
    )
    axes = np.atleast_2d(axes)
    for row, (name, images) in enumerate(panels):
        vmax = float(images["reference"].abs().quantile(0.995))
        for col, key in enumerate(columns):
            img = images[key].abs().numpy()
            ax = axes[row, col]
            ax.imshow(img * (5 if "std" in key else 1), cmap="gray", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(key, fontsize=9)
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(args: argparse.Namespace) -> list[Row]:
    from diffusion_core.checkpoint import load_checkpoint
    from diffusion_core.priors import DEFAULT_PRIOR_PATH

    device = torch.device(args.device)
    denoiser = load_checkpoint(args.checkpoint or DEFAULT_PRIOR_PATH, device=device)
    for p in denoiser.parameters():
        p.requires_grad_(False)
    cases = eval_brain_cases(args.data, args.downscale, args.seed, args.crop)
    if args.held_out is not None and args.held_out.is_file():
        cases.append(held_out_case(args.held_out, args.downscale, seed=args.seed))
    rows: list[Row] = []
    panels = []
    for case in cases:
        maps, t_maps = _timed(partial(espirit_maps, case.kspace, case.mask))
        log.info("%s: ESPIRiT maps from the calibration region (%.1f s)", case.name, t_maps)
        case_rows, images = classical_rows(case, maps)
        rows += case_rows
        for sampler in args.samplers:
            base = ReconConfig(
                sampler=sampler, nfe=args.nfe or SAMPLER_NFE[sampler], num_samples=args.samples
            )
            variants = [base] + [
                replace(base, dc_scale=s) for s in args.dds_dc_scales if sampler == "dds"
            ]
            for config in variants:
                row, mean, std = sampler_row(case, maps, denoiser, config, device, args.seed)
                log.info("%s %s: %.2f dB", case.name, row.method, row.psnr)
                rows.append(row)
                if sampler == args.samplers[0] and config is base:
                    images.update({"posterior mean": mean, "posterior std (x5)": std})
        images["reference"] = case.reference
        if "posterior mean" in images:
            panels.append((case.name, images))
        if args.json:  # after every case, so that an interrupted run keeps what it measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    print_table(rows)
    if args.figure and panels:
        save_figure(panels, args.figure)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=EVAL, help="fully sampled (c, ky, kx) .npy")
    p.add_argument(
        "--held-out", type=Path, default=HELD_OUT, help="held-out volume (skipped if absent)"
    )
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped prior")
    p.add_argument("--samplers", nargs="+", default=list(SAMPLER_NFE), choices=list(SAMPLER_NFE))
    p.add_argument("--nfe", type=int, default=None, help="override every sampler's NFE")
    p.add_argument("--samples", type=int, default=8, help="posterior samples K per slice")
    p.add_argument("--dds-dc-scales", type=float, nargs="*", default=[1.0], help="extra DDS rows")
    p.add_argument("--downscale", type=int, default=1, help="keep the central 1/N of k-space")
    p.add_argument("--crop", type=int, default=None, help="central N x N pixels of the coil images")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--figure", type=Path, default=None, help="PNG (needs matplotlib: extra 'plot')")
    return p.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(parse_args())
