"""Calibrate the shipped prior's std on held-out subjects, leave-one-subject-out, and draw it.

Cases (:mod:`benchmarks.generalization_cases`): slices of the prior's validation subject (never
trained on) with simulated coils and noise, and the real 8-coil brain (not in the training data)
with two masks, per mask class (R=4 1D, R=8 1D, R=8 2D Poisson), each reconstructed at one setting
(default: the replay defaults, DDS, 25 NFE, K = 4, 5 CG iterations) with ESPIRiT maps from the
calibration region; reconstructions are cached (``--cache``, read with ``weights_only=True``), so
``--fit-only`` refits cost seconds. Prints, per mask class and held-out case: object-pixel coverage
of mean +- 2 raw std, of the factor-only model and of the model with the noise term
(:mod:`diffusion_core.uncertainty`), each fitted without the case's subject, and the mean
half-width; writes the fit on all cases into a model card (``--card``, one entry per class) and a
figure (mean, |error|, calibrated half-width, pixels outside; one row per class).
``--sampler langevin`` reconstructs the same cases with the reference sampler and compares it
with the cached DDS ones (raw coverage, PSNR, seconds) instead of fitting.

    nice -n 10 python benchmarks/calibrate_default.py --matrix 128 --volume-cases 8 --threads 1
    python benchmarks/calibrate_default.py --fit-only --matrix 128 \\
        --card diffusion_core/priors/default.json --figure benchmarks/figures/uncertainty.png
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization_cases import (  # noqa: E402
    COIL_KINDS,
    EQUISPACED_CLASSES,
    MASK_CLASSES,
    NOISE_LEVELS,
    case_plan,
    load_subject,
    make_case,
    make_mask,
    real_brain_case,
)
from diffusion_core.checkpoint import read_card, write_calibration  # noqa: E402
from diffusion_core.masks import phase_encode_axis, regular_spacing  # noqa: E402
from diffusion_core.priors import load_default_prior  # noqa: E402
from diffusion_core.reconstruct import ReconConfig, reconstruct  # noqa: E402
from diffusion_core.uncertainty import (  # noqa: E402
    BIRGE_TOLERANCE,
    CalibrationEntry,
    CaseScores,
    Fit,
    Setting,
    acceleration_class,
    calibration_block,
    case_scores,
    coverage,
    data_residual_ratio,
    entries_from_card,
    fit_model,
    interval_multiplier,
    leave_one_out,
    leave_one_out_model,
    lookup,
    mask_sampling,
    matrix_size,
    merged,
    residual_inflation,
)
from gadget.config import GadgetConfig  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
log = logging.getLogger("calibrate_default")


def cases(
    matrix: int, volume_cases: int, mask_class: str, partial: bool = False, edge: bool = False
):
    """(name, subject, kspace, mask, reference, noise) of the held-out subjects (noise: the
    simulated noise per real channel; None for the real brain, whose noise is not known).
    ``partial``: heads the field of view cuts: only the plan's partial-head slices (FOV
    0.8-0.95 x the head), and the real brain with its image cropped to :data:`REAL_CROP` of its
    width (the phase-encode direction of the line masks). ``edge``: heads shifted against one
    edge (:func:`edge_plan`), and the real brain cropped on one side (:data:`EDGE_CROPS`)."""
    out = []
    subject = load_subject(DATA / "train_volumes" / "niivue_FLAIR.nii.gz")
    make_plan = edge_plan if edge else partial_plan if partial else case_plan
    plan = make_plan(subject, volume_cases, (matrix, matrix), 14)
    for i, spec in enumerate(plan):
        case = make_case(
            subject, spec.slice_spec, spec.coils, spec.noise_level, spec.placement, spec.seed
        )
        mask = make_mask(mask_class, case.reference.shape, seed=i)
        out.append(
            (
                case.meta.name,
                subject.name,
                case.kspace * mask,
                mask,
                case.reference,
                case.noise_sigma,
            )
        )
    real = real_brain_case(DATA / "eval" / "brain8ch_full_c_y_x.npy", size=matrix)
    name, kspace, reference = real.meta.name, real.kspace, real.reference
    if partial:
        kspace, reference = crop_width(kspace, reference, REAL_CROP)
        name = f"{name} cropped to x{REAL_CROP:g} of its width"
    # a regular mask is the same for both seeds: one real-brain case, not the same one twice
    real_masks = 1 if mask_class in EQUISPACED_CLASSES and not edge else 2
    for seed in range(real_masks):
        k, ref, label = kspace, reference, name
        if edge:  # one side cut: the high-x side kept for mask 0, the low-x side for mask 1
            fraction = EDGE_CROPS[seed]
            k, ref = crop_width(kspace, reference, fraction, side=1 - 2 * seed)
            label = f"{name} cropped to x{fraction:g} of its width on one side"
        mask = make_mask(mask_class, ref.shape, seed=100 + seed)
        # interleaved with the volume cases, so that a short run has both subjects
        out.insert(
            2 * seed + 1,
            (f"{label} mask {seed}", real.meta.subject, k * mask, mask, ref, None),
        )
    return out


def partial_plan(subject, cases: int, matrix: tuple[int, int], seed: int) -> list:
    """``cases`` partial-head specs (FOV 0.8-0.95 x the head) of the benchmark's plan, their coil
    kinds and noise levels varied in turn (the plan gives every partial head the same ones)."""
    specs = [s for s in case_plan(subject, 4 * cases, matrix, seed) if s.placement.fov_scale < 1]
    return [
        replace(
            spec,
            coils=replace(spec.coils, kind=COIL_KINDS[j % len(COIL_KINDS)]),
            noise_level=NOISE_LEVELS[(j // 2) % len(NOISE_LEVELS)],
        )
        for j, spec in enumerate(specs[:cases])
    ]


def edge_plan(subject, cases: int, matrix: tuple[int, int], seed: int) -> list:
    """``cases`` specs of the benchmark's plan with the head shifted against one edge in x (the
    line masks' phase-encode direction): FOV 1.0-1.1 x the head, shift 0.16-0.22 of the FOV, to
    the low and the high side in turn."""
    specs = [s for s in case_plan(subject, 2 * cases, matrix, seed) if s.placement.fov_scale > 1]
    out = []
    for j, spec in enumerate(specs[:cases]):
        fov = 1.0 + 0.1 * (j % 3) / 2
        dx = (0.16 + 0.06 * ((j // 2) % 3) / 2) * (1 if j % 2 else -1)
        placement = replace(spec.placement, fov_scale=fov, shift=(spec.placement.shift[0], dx))
        out.append(replace(spec, placement=placement))
    return out


# what the replay's FOV rule means by its CG settings (diffusion_core.reconstruct.fov_place)
PLACES = {
    GadgetConfig.cg_iters_inside: " (the head inside the FOV)",
    GadgetConfig.cg_iters_cut: " (the FOV cuts the head on both sides)",
    GadgetConfig.cg_iters: " (the head at one edge of the FOV, or inside it at high noise)",
}
# ... for lines on a regular grid (diffusion_core.masks.regular_spacing), which never get
# cg_iters_inside and get cg_iters_cut wherever the noise is above the rule's limit
REGULAR_PLACES = {
    GadgetConfig.cg_iters_cut: " (lines on a regular grid: the FOV cuts the head on both sides, "
    "or the noise is above the rule's limit)",
    GadgetConfig.cg_iters: " (lines on a regular grid: the noise under the rule's limit)",
}

# the real brain cropped to this fraction of its width: the replay's FOV rule
# (diffusion_core.reconstruct.fov_place) finds it cut on both sides, with both masks of both line
# mask classes, at 96, 128 and 192
REAL_CROP = 0.75
# ... and to these fractions on one side (mask 0, mask 1): the rule finds it at one edge at 192
EDGE_CROPS = (0.8, 0.9)


def crop_width(
    kspace: torch.Tensor, reference: torch.Tensor, fraction: float, side: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fully sampled k-space (c, ky, kx) and its reference image (y, x) of a field of view cut
    to ``fraction`` of the x extent, as the simulated partial heads are (the object beyond the
    FOV is absent, not folded in): the central part (``side`` 0), or the part at the high-x
    (``side`` 1) or low-x (``side`` -1) end, cut on the other side only."""
    from diffusion_core.fft import fft2c, ifft2c

    nx = kspace.shape[-1]
    keep = round(nx * fraction)
    x0 = {0: nx // 2 - keep // 2, 1: nx - keep, -1: 0}[side]
    images = ifft2c(kspace)[..., x0 : x0 + keep]
    return fft2c(images.contiguous()), reference[..., x0 : x0 + keep].contiguous()


def figure(path: Path, rows: list[tuple[str, dict, torch.Tensor]], suptitle: str) -> None:
    """One row per (title, cached case, calibrated half-width): posterior mean, |error|, the
    half-width and the object pixels outside the interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 4, figsize=(13, 3.4 * len(rows)), squeeze=False)
    for row, (title, r, half_width) in zip(axes, rows, strict=True):
        ref, m = r["ref"].abs().numpy(), r["mean"].abs().numpy()
        a = float((m * ref).sum() / (m * m).sum())
        err, hw = np.abs(a * m - ref), a * half_width.numpy()
        inside = (ref > 0.1 * ref.max()) & r["support"].numpy()
        outside = (err > hw) & inside
        panels = [
            (a * m, f"{title}: posterior mean", "gray"),
            (err, "|error|", "magma"),
            (hw, "calibrated 95 % half-width (2 std)", "magma"),
            (
                outside.astype(float),
                f"object pixels outside ({outside.sum() / inside.sum():.1%})",
                "Reds",
            ),
        ]
        vmax = float(np.percentile(np.concatenate([err[inside], hw[inside]]), 99))
        for ax, (img, name, cmap) in zip(row, panels, strict=True):
            kw = {"vmin": 0, "vmax": vmax} if cmap == "magma" else {}
            ax.imshow(img, cmap=cmap, **kw)
            ax.set_title(name, fontsize=9)
            ax.axis("off")
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def reconstruct_cases(
    args: argparse.Namespace, cfg: ReconConfig, mask_class: str, results: dict
) -> list[str]:
    """Reconstruct the cases of one mask class not yet in ``results`` (the cache is rewritten
    after each); return their cache keys ``sampler|mask class|case``."""
    denoiser = load_default_prior()
    todo = cases(args.matrix, args.volume_cases, mask_class, args.partial_heads, args.edge_heads)
    todo = todo[: args.max_cases]
    keys = []
    for i, (name, subject, kspace, mask, ref, noise) in enumerate(todo):
        key = f"{cfg.sampler}|{mask_class}|{name}"
        keys.append(key)
        if key in results:
            continue
        start = time.perf_counter()
        out = reconstruct(
            kspace,
            mask,
            denoiser,
            cfg,
            noise_cov=(
                2 * noise**2 * torch.eye(kspace.shape[0], dtype=torch.complex64)
                if args.noise_scan and noise is not None
                else None
            ),
            generator=torch.Generator().manual_seed(i),
            progress=lambda p: (
                log.info("sample %d step %d/%d", p.first_sample, p.step, p.total_steps)
                if p.step % 5 == 0
                else None
            ),
        )
        results[key] = {
            "subject": subject,
            "ref": ref,
            "mean": out.mean,
            "std": out.std_raw,
            "samples": out.samples,
            "mask": mask,
            "support": out.support,
            "noise": out.noise_sigma * out.scale,
            # for per-case statistics computed from the data alone (data residual, coil maps)
            "kspace": kspace * mask,
            "maps": out.maps,
            "scale": out.scale,
            "nfe": cfg.nfe,
            # the CG iterations the samples used (the FOV rule's choice with --fov-rule)
            "cg_iters": out.cg_iters,
            # rho as reconstruct measured it (on the prewhitened data with --noise-scan, which
            # "kspace" above is not)
            "residual_ratio": out.residual_ratio,
            "seconds": time.perf_counter() - start,
        }
        torch.save(results, args.cache)
        log.info("%d/%d %s: %.0f s", i + 1, len(todo), key, results[key]["seconds"])
    return keys


def entry_groups(
    results: dict, keys_by_class: dict[str, list[str]], cg_iters: int, only_cg: list[int]
) -> dict[tuple[str, int], list[str]]:
    """The cached cases (``keys_by_class``: cache keys per mask class) grouped into the
    calibration entries they make, keyed (mask classes joined by " + ", CG iterations): one per
    setting a model card tells apart (:func:`acceleration_class`, :func:`mask_sampling` of the
    mask) and per CG setting the cases used (with --fov-rule, the rule's choice per case; only
    those of ``only_cg`` where it is not empty). Mask classes that fall in one setting (R=2 and
    R=3 equispaced lines: class 2, 1D) are fitted together, or the second's entry would replace
    the first's in the card."""
    groups: dict[tuple[int, str, int], dict[str, list[str]]] = {}
    for mask_class, keys in keys_by_class.items():
        for key in keys:
            r = results[key]
            cg = cg_of(r, cg_iters)
            if not only_cg or cg in only_cg:
                setting = (acceleration_class(r["mask"]), mask_sampling(r["mask"]), cg)
                groups.setdefault(setting, {}).setdefault(mask_class, []).append(key)
    return {
        (" + ".join(by_class), cg): [key for keys in by_class.values() for key in keys]
        for (_, _, cg), by_class in groups.items()
    }


def residual_ratio(r: dict) -> float:
    """The data misfit rho of a cached case's mean: as reconstruct measured it, or recomputed
    from the cached data (1 for caches made before they kept the data)."""
    if "residual_ratio" in r:
        return float(r["residual_ratio"])
    if "kspace" not in r or "maps" not in r:
        return 1.0
    return data_residual_ratio(r["kspace"], r["mask"], r["maps"], r["mean"], r["noise"])


def cg_of(r: dict, default: int) -> int:
    """The CG iterations a cached case used (``default``, the run's ``--cg-iters``, for caches
    made before they kept it)."""
    return int(r.get("cg_iters") or default)


def scores_of(r: dict) -> CaseScores:
    """A cached case's scores, with its noise term f sigma^2 (sampled fraction x noise^2) and its
    data misfit rho."""
    noise_var = float((r["mask"] != 0).float().mean()) * r["noise"] ** 2
    return case_scores(r["ref"], r["mean"], r["std"], r["support"], noise_var, residual_ratio(r))


def score_card(args: argparse.Namespace, results: dict, keys: list[str], card: Path) -> None:
    """Per case: object-pixel coverage of mean +- 2 std with the entry of ``card`` that
    ``reconstruct`` would use for it (its own CG setting and grid, the nearest entry)."""
    entries = entries_from_card(json.loads(card.read_text()))
    print(f"\n| case | mask | cg_iters | entry used | coverage with {card.name} |")
    print("|---|---|---|---|---|")
    covered = []
    for key in keys:
        r = results[key]
        mask = r["mask"]
        want = Setting(
            args.sampler,
            args.nfe,
            args.samples,
            cg_of(r, args.cg_iters),
            acceleration_class(mask),
            mask_sampling(mask),
            matrix_size(mask),
        )
        entry = lookup(entries, want)
        if entry is None:
            print(f"| {short(key)} | {key.split('|')[1]} | {want.cg_iters} | none | - |")
            continue
        ratios = scores_of(r).ratios(
            entry.noise_weight, entry.residual_exponent, entry.residual_tolerance
        )
        cov = coverage(ratios, entry.factor * interval_multiplier(args.samples))
        covered.append(cov)
        print(
            f"| {short(key)} | {key.split('|')[1]} | {want.cg_iters} | "
            f"{entry.setting.label()} | {cov:.3f} |"
        )
    if covered:
        inside = sum(0.93 <= c <= 0.97 for c in covered)
        print(
            f"in [0.93, 0.97]: {inside}/{len(covered)} (min {min(covered):.3f}, max {max(covered):.3f})"
        )


def half_width(r: dict, fit: Fit, k: int) -> torch.Tensor:
    noise_var = float((r["mask"] != 0).float().mean()) * r["noise"] ** 2
    spread = (r["std"] ** 2 + fit.noise_weight * noise_var * r["support"]).sqrt()
    inflation = residual_inflation(residual_ratio(r), fit.residual_exponent, fit.residual_tolerance)
    return fit.factor * interval_multiplier(k) * spread * inflation


def short(name: str) -> str:
    return name.split("|")[-1]


def report(args: argparse.Namespace, results: dict, per_mask: dict[str, list[str]]) -> None:
    """Per mask class: the per-case table (raw, factor-only and model coverage, each fitted
    without the held-out subject), the fit on all cases (into ``--card``), the figure row."""
    from diffusion_core.metrics import psnr

    k = args.samples
    entries, rows, table = [], [], []
    for (mask_class, cg_iters), keys in per_mask.items():
        if len(keys) < 2:
            print(
                f"\n{mask_class}, cg_iters={cg_iters}: {len(keys)} case ({short(keys[0])}); "
                "a fit needs >= 2 to hold one out: not fitted"
            )
            continue
        rs = [results[key] for key in keys]
        scores = [scores_of(r) for r in rs]
        groups = [r["subject"] for r in rs]
        by_subject = len(set(groups)) > 1
        held = groups if by_subject else [short(key) for key in keys]
        factor_only = leave_one_out(
            [c.ratios() for c in scores], [k] * len(rs), held, guarantee=not args.empirical
        )
        misfit = {
            "residual_exponents": tuple(args.residual_exponents),
            "residual_tolerance": args.residual_tolerance,
            "guarantee": not args.empirical,
        }
        model = leave_one_out_model(scores, [k] * len(rs), held, **misfit)
        # the same model held out by case only (the other cases of its own subject do count)
        by_case = leave_one_out_model(scores, [k] * len(rs), [short(key) for key in keys], **misfit)
        fk = interval_multiplier(k)
        print(
            f"\n{mask_class}: {args.sampler} nfe={args.nfe} K={k} cg_iters={cg_iters}, "
            f"matrix {args.matrix}; held out by {'subject' if by_subject else 'case'}"
        )
        print(
            "| held-out case | raw 2 std | factor only (held out) | model (held out) | "
            "noise_weight, factor | mean half-width / mean ref | model (held out by case) | "
            "object in support | PSNR dB | s |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for key, r, c, f0, f1, f2 in zip(
            keys, rs, scores, factor_only, model, by_case, strict=True
        ):
            hw = half_width(r, f1, k)
            obj = r["ref"].abs() > 0.1 * r["ref"].abs().max()
            inside = obj & r["support"]
            width = float(hw[inside].mean() / r["ref"].abs()[inside].mean())
            row = {
                "mask": mask_class,
                "cg_iters": cg_iters,
                "case": short(key),
                "subject": r["subject"],
                "raw": coverage(c.ratios(), 2.0),
                "factor_only": coverage(c.ratios(), f0.factor * fk),
                "model": coverage(
                    c.ratios(f1.noise_weight, f1.residual_exponent, f1.residual_tolerance),
                    f1.factor * fk,
                ),
                "noise_weight": f1.noise_weight,
                "residual_exponent": f1.residual_exponent,
                "residual_ratio": c.residual_ratio,
                "factor": f1.factor,
                "width": width,
                "model_by_case": coverage(
                    c.ratios(f2.noise_weight, f2.residual_exponent, f2.residual_tolerance),
                    f2.factor * fk,
                ),
                "object_in_support": float(inside.sum() / obj.sum()),
                "psnr": psnr(r["ref"], r["mean"], obj.numpy()),
                "seconds": r["seconds"],
            }
            table.append(row)
            print(
                f"| {row['case']} | {row['raw']:.3f} | {row['factor_only']:.3f} | "
                f"{row['model']:.3f} | {f1.noise_weight:g}, {f1.factor:.3f} | {width:.3f} | "
                f"{row['model_by_case']:.3f} | "
                f"{row['object_in_support']:.3f} | {row['psnr']:.2f} | {r['seconds']:.0f} |"
            )
        mine = [t for t in table if (t["mask"], t["cg_iters"]) == (mask_class, cg_iters)]
        cov = [t["model"] for t in mine]
        cov0 = [t["factor_only"] for t in mine]
        cov2 = [t["model_by_case"] for t in mine]
        print(
            f"held out in [0.93, 0.97]: model {sum(0.93 <= x <= 0.97 for x in cov)}/{len(cov)} "
            f"(min {min(cov):.3f}, median {np.median(cov):.3f}), factor only "
            f"{sum(0.93 <= x <= 0.97 for x in cov0)}/{len(cov0)} (min {min(cov0):.3f}); "
            f"model held out by case {sum(0.93 <= x <= 0.97 for x in cov2)}/{len(cov2)} "
            f"(min {min(cov2):.3f})"
        )
        fit = fit_model(scores, [k] * len(rs), **misfit)
        print(
            f"fit on all {len(rs)} cases ({fit.method}): noise_weight {fit.noise_weight:g}, "
            f"residual_exponent {fit.residual_exponent:g}, "
            f"factor {fit.factor:.3f}, mean coverage {fit.mean_coverage:.3f}"
        )
        mask = rs[0]["mask"]
        axis = phase_encode_axis(mask)
        regular = axis is not None and regular_spacing(mask, axis) is not None
        places = REGULAR_PLACES if regular else PLACES
        setting = Setting(
            args.sampler,
            args.nfe,
            k,
            cg_iters,
            acceleration_class(mask),
            mask_sampling(mask),
            args.matrix,
        )
        data = (
            f"{len(rs)} held-out cases, {args.matrix}x{args.matrix}, {mask_class}"
            + (
                f", those the replay's FOV rule gave cg_iters {cg_iters}{places.get(cg_iters, '')}"
                if args.fov_rule
                else ""
            )
            + (
                ", the simulated noise given as a noise scan measures it"
                " (the real brain's estimated)"
                if args.noise_scan
                else ""
            )
            + ": "
            + ", ".join(sorted(set(groups)))
            + " (benchmarks/generalization_cases.py, benchmarks/calibrate_default.py)"
        )
        before = float(np.mean([coverage(c.ratios(), 2.0) for c in scores]))
        entries.append(
            CalibrationEntry(
                setting,
                fit.factor,
                fit.method,
                len(rs),
                data,
                before,
                fit.mean_coverage,
                noise_weight=fit.noise_weight,
                residual_exponent=fit.residual_exponent,
                residual_tolerance=fit.residual_tolerance,
            )
        )
        i = min(args.figure_case, len(rs) - 1)
        rows.append((mask_class, rs[i], half_width(rs[i], model[i], k)))
        shown = f"{short(keys[i])}; calibration fitted without {groups[i]}"
    if args.json is not None:
        args.json.write_text(json.dumps(table, indent=1))
    if args.card is not None:
        old = entries_from_card(read_card(args.card))
        write_calibration(args.card, calibration_block(merged(old, tuple(entries))), out=None)
        print(f"wrote {len(entries)} calibration entries into {args.card}")
    if args.figure is not None and rows:
        figure(args.figure, rows, f"{shown}; {args.sampler} nfe={args.nfe} K={k}")


def compare(args: argparse.Namespace, results: dict, mask_class: str, keys: list[str]) -> None:
    """``args.sampler`` against DDS on the same cases: coverage of mean +- 2 raw std and of
    mean +- finite_k_factor(K) raw std (what an exact posterior sampler would cover, bar prior
    mismatch), PSNR, seconds."""
    from diffusion_core.metrics import psnr

    k = args.samples
    fk = interval_multiplier(k)
    print(
        f"\n{mask_class}: {args.sampler} (nfe={args.nfe}) against dds, K={k}, matrix {args.matrix}"
    )
    print("| case | sampler | NFE | coverage raw 2 std | coverage raw finite-K (t) | PSNR dB | s |")
    print("|---|---|---|---|---|---|---|")
    table = []
    for key in keys:
        for sampler in ("dds", args.sampler):
            name = f"{sampler}|{key.split('|')[1]}|{short(key)}"
            if name not in results:
                continue
            r = results[name]
            c = scores_of(r)
            inside = (r["ref"].abs() > 0.1 * r["ref"].abs().max()) & r["support"]
            row = {
                "case": short(key),
                "sampler": sampler,
                "nfe": r.get("nfe", args.nfe if sampler == args.sampler else 25),
                "raw_2std": coverage(c.ratios(), 2.0),
                "raw_finite_k": coverage(c.ratios(), fk),
                "psnr": psnr(r["ref"], r["mean"], inside.numpy()),
                "seconds": r["seconds"],
            }
            table.append(row)
            print(
                f"| {row['case']} | {sampler} | {row['nfe']} | {row['raw_2std']:.3f} | "
                f"{row['raw_finite_k']:.3f} | {row['psnr']:.2f} | {row['seconds']:.0f} |"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(table, indent=1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--matrix", type=int, default=80)
    p.add_argument("--volume-cases", type=int, default=4)
    p.add_argument(
        "--masks",
        nargs="+",
        default=list(MASK_CLASSES),
        choices=MASK_CLASSES + EQUISPACED_CLASSES,
        help="mask classes; those whose masks fall in one acceleration class and sampling "
        "(R=2 and R=3 equispaced: class 2, 1D) are fitted together into one entry",
    )
    p.add_argument(
        "--max-cases", type=int, help="use only the first N cases (interleaved subjects)"
    )
    p.add_argument("--figure-case", type=int, default=0, help="which case the figure shows")
    p.add_argument("--fit-only", action="store_true", help="fit on the cached reconstructions only")
    p.add_argument("--sampler", default="dds", choices=("dds", "langevin"))
    p.add_argument("--nfe", type=int, default=25)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument(
        "--linear-width",
        action="store_true",
        help="with --samples 1: fit the linear-Gaussian width (ReconConfig.linear_width)",
    )
    p.add_argument("--cg-iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--card", type=Path, help="model card to write the fit into")
    p.add_argument(
        "--noise-scan",
        action="store_true",
        help="give reconstruct the simulated cases' noise covariance, as a noise scan would "
        "(the FOV rule then uses its measured-noise limit); the real brain has none",
    )
    p.add_argument("--figure", type=Path)
    p.add_argument("--json", type=Path, help="per-case numbers")
    p.add_argument(
        "--residual-exponents",
        nargs="+",
        type=float,
        default=[0.0],
        help="the data-misfit exponents to fit among (0: none, the shipped model; 0.5: Birge ratio)",
    )
    p.add_argument(
        "--residual-tolerance",
        type=float,
        default=BIRGE_TOLERANCE,
        help="the misfit rho the inflation tolerates: max(rho / tolerance, 1)^exponent",
    )
    p.add_argument(
        "--empirical",
        action="store_true",
        help="fit the factor to a mean case coverage of 0.95 also where the cases are enough for "
        "conformal risk control (>= 19), whose bound asks 0.99 of 24 cases",
    )
    p.add_argument("--cache", type=Path, default=Path("/tmp/calibrate_default.pt"))
    p.add_argument(
        "--partial-heads",
        action="store_true",
        help="heads the FOV cuts: the plan's partial heads, the real brain cropped in width",
    )
    p.add_argument(
        "--score-card",
        type=Path,
        help="no fit: each case's coverage with the entry of this card that reconstruct would use",
    )
    p.add_argument(
        "--edge-heads",
        action="store_true",
        help="heads at one edge of the FOV: plan slices shifted against one edge, the real brain "
        "cropped on one side",
    )
    p.add_argument(
        "--fov-rule",
        action="store_true",
        help="CG iterations per case by the replay's FOV rule (cg_iters_inside / cg_iters_cut "
        "of the replay defaults), one entry per CG setting the cases got",
    )
    p.add_argument(
        "--fit-cg-iters",
        type=int,
        nargs="+",
        default=[],
        help="fit (and write) only the entries of these CG settings",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    rule = GadgetConfig() if args.fov_rule else None
    cfg = ReconConfig(
        sampler=args.sampler,
        nfe=args.nfe,
        num_samples=args.samples,
        cg_iters=args.cg_iters,
        cg_iters_inside=rule.cg_iters_inside if rule else None,
        cg_iters_cut=rule.cg_iters_cut if rule else None,
        linear_width=args.linear_width,
    )
    results = torch.load(args.cache, weights_only=True) if args.cache.is_file() else {}
    keys_by_class = {}
    for mask_class in args.masks:
        if args.fit_only:  # the cached reconstructions, in the order they were made
            prefix = f"{args.sampler}|{mask_class}|"
            keys_by_class[mask_class] = [k for k in results if k.startswith(prefix)][
                : args.max_cases
            ]
        else:
            keys_by_class[mask_class] = reconstruct_cases(args, cfg, mask_class, results)
    per_mask = entry_groups(results, keys_by_class, args.cg_iters, args.fit_cg_iters)
    if args.score_card:
        for keys in per_mask.values():
            score_card(args, results, keys, args.score_card)
    elif args.sampler == "dds":
        report(args, results, per_mask)
    else:
        for (mask_class, _), keys in per_mask.items():
            compare(args, results, mask_class, keys)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
