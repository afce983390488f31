"""Calibrate the shipped prior's std on held-out subjects, leave-one-subject-out, and draw it.

Cases (:mod:`benchmarks.generalization_cases`): slices of the prior's validation subject (never
trained on) with simulated coils and noise, and the real 8-coil brain (not in the training data),
at a small matrix so the CPU can afford it; each reconstructed at one setting (default: the replay
defaults, DDS, 25 NFE, K = 4, 5 CG iterations) with ESPIRiT maps from the calibration region.
Prints, per held-out case: object-pixel coverage of mean +- 2 std before calibration and after
(the factor fitted on the other subject's cases only), and the mean half-width; writes the fit on
all cases into a model card (``--card``) and a figure (mean, |error|, calibrated half-width,
pixels outside) for the first case.

    nice -n 10 python benchmarks/calibrate_default.py --matrix 80 --volume-cases 4 \\
        --card diffusion_core/priors/default.json --figure benchmarks/figures/uncertainty.png
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization_cases import (  # noqa: E402
    case_plan,
    load_subject,
    make_case,
    make_mask,
    real_brain_case,
)
from diffusion_core.checkpoint import read_card, write_calibration  # noqa: E402
from diffusion_core.priors import load_default_prior  # noqa: E402
from diffusion_core.reconstruct import ReconConfig, reconstruct  # noqa: E402
from diffusion_core.uncertainty import (  # noqa: E402
    CalibrationEntry,
    Setting,
    acceleration_class,
    calibration_block,
    coverage,
    entries_from_card,
    finite_k_factor,
    fit_factor,
    leave_one_out,
    merged,
    pixel_ratios,
)

DATA = ROOT.parent / "shared" / "data"
log = logging.getLogger("calibrate_default")


def cases(matrix: int, volume_cases: int, mask_class: str):
    """(name, subject, kspace, mask, reference) of the held-out subjects."""
    out = []
    subject = load_subject(DATA / "train_volumes" / "niivue_FLAIR.nii.gz")
    for i, spec in enumerate(case_plan(subject, volume_cases, (matrix, matrix), seed=14)):
        case = make_case(
            subject, spec.slice_spec, spec.coils, spec.noise_level, spec.placement, spec.seed
        )
        mask = make_mask(mask_class, case.reference.shape, seed=i)
        out.append((case.meta.name, subject.name, case.kspace * mask, mask, case.reference))
    real = real_brain_case(DATA / "eval" / "brain8ch_full_c_y_x.npy", size=matrix)
    for seed in range(2):
        mask = make_mask(mask_class, real.reference.shape, seed=100 + seed)
        # interleaved with the volume cases, so that a short run has both subjects
        out.insert(
            2 * seed + 1,
            (
                f"{real.meta.name} mask {seed}",
                real.meta.subject,
                real.kspace * mask,
                mask,
                real.reference,
            ),
        )
    return out


def figure(path: Path, ref, mean, half_width, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, m = ref.abs().numpy(), mean.abs().numpy()
    a = float((m * r).sum() / (m * m).sum())
    err, hw = np.abs(a * m - r), a * half_width.numpy()
    inside = r > 0.1 * r.max()
    outside = (err > hw) & inside
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    panels = [
        (a * m, "posterior mean", "gray"),
        (err, "|error|", "magma"),
        (hw, "calibrated 95 % half-width (2 std)", "magma"),
        (
            outside.astype(float),
            f"object pixels outside ({outside.sum() / inside.sum():.1%})",
            "Reds",
        ),
    ]
    vmax = float(np.percentile(np.concatenate([err[inside], hw[inside]]), 99))
    for ax, (img, name, cmap) in zip(axes, panels, strict=True):
        kw = {"vmin": 0, "vmax": vmax} if cmap == "magma" else {}
        ax.imshow(img, cmap=cmap, **kw)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def reconstruct_cases(args: argparse.Namespace, cfg: ReconConfig, results: dict) -> list:
    """Reconstruct the cases not yet in ``results`` (saved to the cache after each)."""
    denoiser = load_default_prior()
    todo = cases(args.matrix, args.volume_cases, args.mask)[: args.max_cases]
    for i, (name, subject, kspace, mask, ref) in enumerate(todo):
        if name in results:
            continue
        start = time.perf_counter()
        out = reconstruct(
            kspace,
            mask,
            denoiser,
            cfg,
            generator=torch.Generator().manual_seed(i),
            progress=lambda p: (
                log.info("sample %d step %d/%d", p.first_sample, p.step, p.total_steps)
                if p.step % 5 == 0
                else None
            ),
        )
        results[name] = {
            "subject": subject,
            "ref": ref,
            "mean": out.mean,
            "std": out.std_raw,
            "mask": mask,
            "seconds": time.perf_counter() - start,
        }
        torch.save(results, args.cache)
        log.info("%d/%d %s: %.0f s", i + 1, len(todo), name, results[name]["seconds"])
    return todo


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--matrix", type=int, default=80)
    p.add_argument("--volume-cases", type=int, default=4)
    p.add_argument("--mask", default="R=4 1D random")
    p.add_argument(
        "--max-cases", type=int, help="use only the first N cases (interleaved subjects)"
    )
    p.add_argument("--figure-case", type=int, default=0, help="which case the figure shows")
    p.add_argument("--fit-only", action="store_true", help="fit on the cached reconstructions only")
    p.add_argument("--nfe", type=int, default=25)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--cg-iters", type=int, default=5)
    p.add_argument("--card", type=Path, help="model card to write the fit into")
    p.add_argument("--figure", type=Path)
    p.add_argument("--cache", type=Path, default=Path("/tmp/calibrate_default.pt"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(2)
    cfg = ReconConfig(nfe=args.nfe, num_samples=args.samples, cg_iters=args.cg_iters)
    results = torch.load(args.cache, weights_only=True) if args.cache.is_file() else {}
    if args.fit_only:  # the cached reconstructions, in the order they were made
        todo = [(name, r["subject"]) for name, r in results.items()][: args.max_cases]
    else:
        todo = reconstruct_cases(args, cfg, results)
    names = [t[0] for t in todo]
    rs = [results[n] for n in names]
    ratios = [pixel_ratios(r["ref"], r["mean"], r["std"]) for r in rs]
    groups = [r["subject"] for r in rs]
    ks = [args.samples] * len(rs)
    # leave-one-subject-out; with one subject only, leave-one-case-out (said in the output)
    held_by = "subject" if len(set(groups)) > 1 else "case (one subject only)"
    loso = leave_one_out(ratios, ks, groups if len(set(groups)) > 1 else names)
    fk = finite_k_factor(args.samples)
    print(
        f"setting: dds nfe={args.nfe} K={args.samples} cg_iters={args.cg_iters} {args.mask}, matrix {args.matrix}"
    )
    print(f"calibrated column: factor fitted without the held-out {held_by}")
    print(
        "| held-out case | coverage raw 2 std | coverage calibrated (held out) | factor | mean half-width / mean |ref| | s |"
    )
    print("|---|---|---|---|---|---|")
    for n, r, rat, f in zip(names, rs, ratios, loso, strict=True):
        half = f.factor * fk * r["std"]
        inside = r["ref"].abs() > 0.1 * r["ref"].abs().max()
        width = float(half[inside].mean() / r["ref"].abs()[inside].mean())
        print(
            f"| {n} | {coverage(rat, 2.0):.3f} | {coverage(rat, f.factor * fk):.3f} | {f.factor:.2f} | {width:.3f} | {r['seconds']:.0f} |"
        )
    fit = fit_factor(ratios, ks)
    print(
        f"fit on all {len(rs)} cases ({fit.method}): factor {fit.factor:.3f}, mean coverage {fit.mean_coverage:.3f}"
    )
    setting = Setting(
        "dds", args.nfe, args.samples, args.cg_iters, acceleration_class(rs[0]["mask"])
    )
    data = (
        f"{len(rs)} held-out cases, {args.matrix}x{args.matrix}, {args.mask}: "
        + ", ".join(sorted(set(groups)))
        + " (benchmarks/generalization_cases.py, benchmarks/calibrate_default.py)"
    )
    before = float(np.mean([coverage(r, 2.0) for r in ratios]))
    entry = CalibrationEntry(
        setting, fit.factor, fit.method, len(rs), data, before, fit.mean_coverage
    )
    if args.card is not None:
        old = entries_from_card(read_card(args.card))
        write_calibration(args.card, calibration_block(merged(old, (entry,))), out=None)
        print(f"wrote the calibration into {args.card}")
    if args.figure is not None:
        i = args.figure_case
        r, f = rs[i], loso[i]
        figure(
            args.figure,
            r["ref"],
            r["mean"],
            f.factor * fk * r["std"],
            f"{names[i]}: dds nfe={args.nfe} K={args.samples}, factor {f.factor:.2f} fitted "
            f"without it ({held_by})",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
