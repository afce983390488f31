"""Generalization benchmark: the product at the replay defaults against tuned L1-wavelet, per case.

Cases come from :mod:`benchmarks.generalization_cases`: slices of every subject in
``../shared/data/train_volumes`` (three orientations, varied FOV, placement and partial heads,
four kinds of simulated coils, two noise levels) and the real fully sampled 8-coil brain, each
undersampled with 1D random R=4, 1D random R=8 and 2D Poisson R=8 masks at several seeds. Coil
maps come from the calibration region only (ESPIRiT), shared by both methods.

Product: :func:`diffusion_core.reconstruct.reconstruct` with the gadget's defaults
(``gadget/config.py``: DDS, 25 NFE, 4 samples, 5 CG iterations; the rest ReconConfig's defaults).
L1-wavelet: :func:`diffusion_core.classical.l1_wavelet` at the best of ``--l1-weights`` on each
case and mask (an oracle choice, which favours the baseline).

Per case: PSNR over the whole image and over the object (:func:`diffusion_core.metrics.object_region`),
SSIM, the margins over L1-wavelet, the fraction of object pixels within 2 posterior standard
deviations, and the **false-signal figure**: the 99th percentile of the (best-scaled) magnitude
outside the reference's object dilated by ``--dilate`` pixels, relative to the 99th percentile
of the reference inside the object (0: nothing outside; the reference's own value is its noise
floor, 0 for simulated cases). Summary: minimum and median over cases (each the median over its
mask seeds) per mask class, separately for subjects the prior saw in training and held-out ones
(read from the prior's model card ``<checkpoint>.json``). ``--checkpoint-for SUBJECT=PATH`` gives
a subject its own prior (leave-one-subject-out); ``--checkpoint-dir DIR`` gives each subject the
prior in DIR whose model card holds it out (``scripts/gpu_loso.sh`` trains such a folder).

    python benchmarks/generalization.py --size 160 --cases-per-subject 3 --seeds 0 1 2 --device cuda
    nice -n 10 python benchmarks/generalization.py --size 96 --subjects niivue_FLAIR colin27 real \\
        --cases-per-subject 2 --seeds 0 --samples 2 --out benchmarks/results/generalization_cpu.md
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization_cases import (  # noqa: E402
    MASK_CLASSES,
    Case,
    Subject,
    case_plan,
    load_subject,
    make_case,
    make_mask,
    prior_subjects,
    real_brain_case,
)
from benchmarks.prior_quality import within_2std  # noqa: E402
from diffusion_core.classical import l1_wavelet  # noqa: E402
from diffusion_core.espirit import espirit_maps  # noqa: E402
from diffusion_core.metrics import object_region, psnr, ssim  # noqa: E402
from diffusion_core.reconstruct import ReconConfig, reconstruct  # noqa: E402
from diffusion_core.uncertainty import entries_from_card  # noqa: E402
from gadget.config import GadgetConfig  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
REAL = "real"  # --subjects name of the real 8-coil brain
L1_WEIGHTS = (0.001, 0.003, 0.01)

log = logging.getLogger("generalization")


@dataclass(frozen=True)
class Record:
    """One case under one mask and seed; ``pm`` = product (posterior mean), ``l1`` = L1-wavelet."""

    case: str
    subject: str
    group: str
    mask: str
    seed: int
    psnr_pm: float
    psnr_l1: float
    psnr_object_pm: float
    psnr_object_l1: float
    ssim_pm: float
    ssim_l1: float
    margin: float
    margin_object: float
    within_2std: float
    false_signal_pm: float
    false_signal_l1: float
    false_signal_ref: float
    l1_weight: float
    seconds_pm: float
    seconds_l1: float
    checkpoint: str
    # with the std as the product sends it (the prior's card calibration); NaN where the card has
    # none for the setting, and in results written before this column
    within_2std_calibrated: float = math.nan
    # the CG iterations used (a rule may choose them per scan); 0 in results written before
    cg_iters: int = 0

    @property
    def false_signal_excess(self) -> float:
        """Product's false signal minus L1-wavelet's (> 0: the product shows more)."""
        return self.false_signal_pm - self.false_signal_l1

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.case, self.mask, self.seed)


def outside_object(ref: torch.Tensor, dilate: int) -> np.ndarray:
    """Boolean (y, x): pixels farther than ``dilate`` pixels from the reference's object."""
    from scipy.ndimage import binary_dilation

    inside = object_region(ref)
    return ~binary_dilation(inside, structure=np.ones((3, 3), bool), iterations=dilate)


def false_signal(ref: torch.Tensor, img: torch.Tensor, outside: np.ndarray) -> float:
    """99th percentile of a|img| outside the dilated object / 99th percentile of |ref| inside it
    (``a``: the metrics' least-squares scale); NaN when nothing lies outside."""
    r, m = ref.abs().double().numpy(), img.abs().double().numpy()
    a = float((m * r).sum() / max((m * m).sum(), 1e-30))
    if not outside.any():
        return math.nan
    return float(np.percentile(a * m[outside], 99) / np.percentile(r[object_region(ref)], 99))


def group_of(subject: str, splits: dict[str, str] | None) -> str:
    """``seen by prior`` / ``held out`` from the prior's model card."""
    if subject == REAL or subject.startswith("brain8ch"):
        return "held out (eval brain: defaults chosen on it)"
    if splits is None:
        return "unknown (no model card)"
    return "seen by prior" if splits.get(subject) == "train" else "held out"


def evaluate(
    case: Case,
    mask_class: str,
    seed: int,
    denoiser: torch.nn.Module,
    config: ReconConfig,
    weights: tuple[float, ...],
    device: torch.device,
    dilate: int,
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Product and L1-wavelet on one case and mask; metrics and images (reference, pm, std, l1)."""
    ref = case.reference
    shape = (int(ref.shape[-2]), int(ref.shape[-1]))
    mask = make_mask(mask_class, shape, seed)
    kspace = case.kspace * mask
    maps = espirit_maps(kspace, mask)
    start = time.perf_counter()
    g = torch.Generator(device).manual_seed(seed)
    result = reconstruct(
        kspace.to(device), mask.to(device), denoiser, config, maps=maps.to(device), generator=g
    )
    seconds_pm = time.perf_counter() - start
    pm, std = result.mean.cpu(), result.std_raw.cpu()
    start = time.perf_counter()
    runs = {w: l1_wavelet(kspace, mask, maps, lam=w) for w in weights}
    seconds_l1 = (time.perf_counter() - start) / len(weights)
    best = max(runs, key=lambda w: psnr(ref, runs[w]))
    l1 = runs[best]
    region, outside = object_region(ref), outside_object(ref, dilate)
    values = {
        "psnr_pm": psnr(ref, pm),
        "psnr_l1": psnr(ref, l1),
        "psnr_object_pm": psnr(ref, pm, region),
        "psnr_object_l1": psnr(ref, l1, region),
        "ssim_pm": ssim(ref, pm),
        "ssim_l1": ssim(ref, l1),
        "within_2std": within_2std(ref, pm, std) if config.num_samples > 1 else math.nan,
        "within_2std_calibrated": (
            within_2std(ref, pm, result.std.cpu()) if result.calibrated else math.nan
        ),
        "false_signal_pm": false_signal(ref, pm, outside),
        "false_signal_l1": false_signal(ref, l1, outside),
        "false_signal_ref": false_signal(ref, ref, outside),
        "l1_weight": best,
        "seconds_pm": seconds_pm,
        "seconds_l1": seconds_l1,
        "cg_iters": result.cg_iters,
    }
    values["margin"] = values["psnr_pm"] - values["psnr_l1"]
    values["margin_object"] = values["psnr_object_pm"] - values["psnr_object_l1"]
    return values, {"reference": ref, "product": pm, "std": std, "L1-wavelet": l1}


def _median_per_case(records: list[Record], field: str) -> list[float]:
    """Per case, the median of ``field`` over its seeds (NaNs dropped)."""
    by_case: dict[str, list[float]] = {}
    for r in records:
        value = getattr(r, field)
        if not math.isnan(value):
            by_case.setdefault(r.case, []).append(value)
    return [statistics.median(v) for v in by_case.values()]


SUMMARY_FIELDS = (
    ("margin", "margin dB"),
    ("margin_object", "margin dB, object"),
    ("psnr_pm", "PSNR dB"),
    ("ssim_pm", "SSIM"),
    ("within_2std", "within 2 raw std"),
    ("within_2std_calibrated", "within 2 calibrated std"),
    ("false_signal_pm", "false signal, product"),
    ("false_signal_l1", "false signal, L1"),
    ("false_signal_excess", "false signal, product - L1"),
)


def summary_table(records: list[Record]) -> list[str]:
    """Markdown lines: per (group, mask class), min / median over cases of each summary field
    (median / max for the false signal)."""
    head = " | ".join(
        f"{label} median / max" if f.startswith("false") else f"{label} min / median"
        for f, label in SUMMARY_FIELDS
    )
    lines = [f"| group | mask | cases | {head} |", "|---" * (3 + len(SUMMARY_FIELDS)) + "|"]
    for group in sorted({r.group for r in records}):
        for mask in MASK_CLASSES:
            rows = [r for r in records if r.group == group and r.mask == mask]
            if not rows:
                continue
            cells = []
            for field, _ in SUMMARY_FIELDS:
                values = _median_per_case(rows, field)
                digits = 3 if field.startswith(("ssim", "within", "false")) else 2
                low, mid = min(values, default=0), statistics.median(values) if values else 0
                if field.startswith("false"):  # bright background is worse the larger it is
                    low, mid = mid, max(values, default=0)
                cells.append(f"{low:.{digits}f} / {mid:.{digits}f}" if values else "-")
            n = len({r.case for r in rows})
            lines.append(f"| {group} | {mask} | {n} | " + " | ".join(cells) + " |")
    return lines


def case_table(records: list[Record]) -> list[str]:
    """Markdown lines: one row per record."""
    lines = [
        "| case | group | mask | seed | PSNR product / L1 | margin | margin, object | SSIM product / L1 "
        "| within 2 std raw / calibrated | false signal product / L1 / ref | L1 weight "
        "| cg_iters | s product / L1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r.case} | {r.group} | {r.mask} | {r.seed} | {r.psnr_pm:.2f} / {r.psnr_l1:.2f} "
            f"| {r.margin:+.2f} | {r.margin_object:+.2f} | {r.ssim_pm:.3f} / {r.ssim_l1:.3f} "
            f"| {r.within_2std:.3f} / {r.within_2std_calibrated:.3f} | {r.false_signal_pm:.3f} / {r.false_signal_l1:.3f} / "
            f"{r.false_signal_ref:.3f} | {r.l1_weight:g} | {r.cg_iters or '-'} "
            f"| {r.seconds_pm:.0f} / {r.seconds_l1:.0f} |"
        )
    return lines


def write_markdown(records: list[Record], args: argparse.Namespace, path: Path) -> None:
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = "?"
    shown = [
        a for i, a in enumerate(args.argv) if a != "--note" and args.argv[i - 1 : i] != ["--note"]
    ]
    lines = [
        "# Generalization benchmark",
        "",
        f"Command: `python benchmarks/generalization.py {' '.join(shown)}` "
        f"(commit {commit or '?'}, device {args.device}).",
        f"Product: DDS, nfe {args.nfe}, K = {args.samples}, cg_iters {args.cg_iters}"
        + (
            f" ({args.cg_iters_inside} for line masks with the object inside the FOV, "
            f"{getattr(args, 'cg_iters_cut', 0) or args.cg_iters} where the FOV cuts it)"
            if getattr(args, "cg_iters_inside", None)
            else ""
        )
        + "; "
        f"L1-wavelet: best of weights {list(args.l1_weights)} per case and mask. "
        f"False signal: 99th percentile outside the object dilated by {args.dilate} px / "
        "the object's 99th percentile.",
        "Groups: from the prior's model card (`<checkpoint>.json`): subjects in its training data are "
        "'seen by prior'; only a prior trained without a subject (`--checkpoint-for`) makes its "
        "rows a leave-one-subject-out result.",
        *([f"Note: {args.note}"] if args.note else []),
        "",
        "## Summary (per case: median over its seeds; then min / median over cases; false signal: median / max)",
        "",
        *summary_table(records),
        "",
        "## Cases",
        "",
        *case_table(records),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def save_figure(
    records: list[Record], images: dict[tuple, dict[str, torch.Tensor]], dilate: int, path: Path
) -> None:
    """Per mask class, the case with the lowest margin: reference, product, L1-wavelet, 5 x std,
    and both methods' magnitude outside the dilated object (x 10)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worst = []
    for mask in MASK_CLASSES:
        rows = [r for r in records if r.mask == mask and r.key in images]
        if rows:
            worst.append(min(rows, key=lambda r: r.margin))
    if not worst:
        return
    cols = ["reference", "product", "L1-wavelet", "std x5", "product outside x10", "L1 outside x10"]
    fig, axes = plt.subplots(len(worst), len(cols), figsize=(2.2 * len(cols), 2.5 * len(worst)))
    axes = np.atleast_2d(axes)
    for i, r in enumerate(worst):
        im = images[r.key]
        ref = im["reference"].abs().numpy()
        vmax = float(np.percentile(ref, 99.5))
        outside = outside_object(im["reference"], dilate)
        panels = {
            "reference": ref,
            "product": _fitted(ref, im["product"]),
            "L1-wavelet": _fitted(ref, im["L1-wavelet"]),
            "std x5": 5 * im["std"].numpy() * _scale(ref, im["product"]),
            "product outside x10": 10 * _fitted(ref, im["product"]) * outside,
            "L1 outside x10": 10 * _fitted(ref, im["L1-wavelet"]) * outside,
        }
        for j, name in enumerate(cols):
            ax = axes[i, j]
            ax.imshow(panels[name], cmap="gray", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{r.mask}\n{r.case[:34]}\n{r.margin:+.2f} dB", fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _scale(ref: np.ndarray, img: torch.Tensor) -> float:
    m = img.abs().double().numpy()
    return float((m * ref).sum() / max((m * m).sum(), 1e-30))


def _fitted(ref: np.ndarray, img: torch.Tensor) -> np.ndarray:
    return _scale(ref, img) * img.abs().double().numpy()


def build_cases(args: argparse.Namespace) -> list[Case]:
    """The volume cases of each named subject (``case_plan``) and, for ``real``, the real brain."""
    volumes: dict[str, Path] = {}
    for path in sorted((args.data_dir / "train_volumes").glob("*")):
        from diffusion_core.training.data import subject_of

        volumes.setdefault(subject_of(path), path)  # colin27: the 1 mm file comes first
    names = args.subjects or [*volumes, REAL]
    unknown = [n for n in names if n != REAL and n not in volumes]
    if unknown:
        raise SystemExit(
            f"--subjects: unknown {unknown}; expected some of {[*volumes, REAL]} "
            f"(volumes in {args.data_dir / 'train_volumes'})"
        )
    cases = []
    for name in names:
        if name == REAL:
            real_size = args.real_size or max(args.size, 128)
            path = args.data_dir / "eval" / "brain8ch_full_c_y_x.npy"
            cases.append(real_brain_case(path, real_size))
            continue
        subject: Subject = load_subject(volumes[name])
        for spec in case_plan(
            subject, args.cases_per_subject, (args.size, args.size), args.case_seed
        ):
            cases.append(
                make_case(
                    subject,
                    spec.slice_spec,
                    spec.coils,
                    spec.noise_level,
                    spec.placement,
                    spec.seed,
                )
            )
    return cases


def _image_file(folder: Path, key: tuple[str, str, int]) -> Path:
    name = "_".join(str(k) for k in key)
    return folder / ("".join(c if c.isalnum() or c in "=.-" else "_" for c in name) + ".npz")


def save_images(folder: Path, key: tuple[str, str, int], images: dict[str, torch.Tensor]) -> None:
    """The record's images (reference, product, std, L1-wavelet) as one .npz, for --render-only."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(_image_file(folder, key), **{k: v.numpy() for k, v in images.items()})


def load_images(folder: Path, key: tuple[str, str, int]) -> dict[str, torch.Tensor] | None:
    path = _image_file(folder, key)
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {k: torch.from_numpy(data[k]) for k in data.files}


def _load_records(path: Path | None) -> list[Record]:
    if path is None or not path.is_file():
        return []
    return [Record(**r) for r in json.loads(path.read_text())]


def run(args: argparse.Namespace) -> list[Record]:
    from diffusion_core.checkpoint import load_checkpoint
    from diffusion_core.priors import DEFAULT_PRIOR_PATH

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = ReconConfig(
        sampler="dds",
        nfe=args.nfe,
        num_samples=args.samples,
        cg_iters=args.cg_iters,
        cg_select=tuple(args.cg_select),
        cg_iters_inside=args.cg_iters_inside or None,
        cg_iters_cut=args.cg_iters_cut or None,
    )
    default = Path(args.checkpoint or DEFAULT_PRIOR_PATH)
    loaded: dict[Path, tuple[torch.nn.Module, dict[str, str] | None, ReconConfig]] = {}

    def prior_for(
        subject: str,
    ) -> tuple[Path, torch.nn.Module, dict[str, str] | None, ReconConfig]:
        path = Path(args.checkpoint_for.get(subject, default))
        if path not in loaded:
            denoiser = load_checkpoint(path, device=device)
            for p in denoiser.parameters():
                p.requires_grad_(False)
            card_path = path.with_suffix(".json")
            card = json.loads(card_path.read_text()) if card_path.is_file() else {}
            # the std as the product sends it: this prior's own calibration, if its card has one
            calibrated = replace(config, calibration=entries_from_card(card))
            splits = prior_subjects(card_path) if card_path.is_file() else None
            loaded[path] = (denoiser, splits, calibrated)
        return (path, *loaded[path])

    if args.render_only:
        records = _load_records(args.json)
        if args.out:
            write_markdown(records, args, args.out)
        if args.figure and args.images:
            found = {r.key: load_images(args.images, r.key) for r in records}
            kept = {k: v for k, v in found.items() if v is not None}
            save_figure(records, kept, args.dilate, args.figure)  # type: ignore[arg-type]
        print("\n".join(summary_table(records)))
        return records
    cases = build_cases(args)
    records = _load_records(args.json) if args.resume else []
    done = {r.key for r in records}
    images: dict[tuple, dict[str, torch.Tensor]] = {}
    for seed in args.seeds:
        for case in cases:
            subject = case.meta.subject
            path, denoiser, splits, prior_config = prior_for(subject)
            for mask in args.masks:
                if (case.meta.name, mask, seed) in done:
                    continue
                values, imgs = evaluate(
                    case,
                    mask,
                    seed,
                    denoiser,
                    prior_config,
                    tuple(args.l1_weights),
                    device,
                    args.dilate,
                )
                record = Record(
                    case.meta.name,
                    subject,
                    group_of(subject, splits),
                    mask,
                    seed,
                    checkpoint=path.name,
                    **values,  # type: ignore[arg-type]
                )
                records.append(record)
                images[record.key] = imgs
                if args.images:
                    save_images(args.images, record.key, imgs)
                log.info(
                    "%s | %s | seed %d: product %.2f dB, L1 %.2f dB (margin %+.2f), "
                    "false signal %.3f / %.3f, %.0f s",
                    record.case,
                    mask,
                    seed,
                    record.psnr_pm,
                    record.psnr_l1,
                    record.margin,
                    record.false_signal_pm,
                    record.false_signal_l1,
                    record.seconds_pm,
                )
                if args.json:  # after every record: an interrupted run keeps what it measured
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    args.json.write_text(json.dumps([asdict(r) for r in records], indent=1))
                if args.out:
                    write_markdown(records, args, args.out)
            if args.figure and images:  # after every case, for the same reason
                save_figure(records, images, args.dilate, args.figure)
    print("\n".join(summary_table(records)))
    return records


def held_out_priors(folder: Path) -> dict[str, str]:
    """Subject -> checkpoint in ``folder`` whose model card lists the subject as ``validation``
    (held out of its training). ``ValueError`` if two cards hold out the same subject or if the
    folder has no checkpoint with a card."""
    found: dict[str, str] = {}
    weights = sorted(
        p for p in Path(folder).glob("*.safetensors") if not p.name.endswith(".state.safetensors")
    )
    with_cards = [p for p in weights if p.with_suffix(".json").is_file()]
    if not with_cards:
        raise ValueError(f"--checkpoint-dir {folder}: no STEM.safetensors with its STEM.json card")
    for path in with_cards:
        for subject, split in prior_subjects(path.with_suffix(".json")).items():
            if split != "validation":
                continue
            if subject in found:
                raise ValueError(
                    f"--checkpoint-dir {folder}: {subject} is held out by both "
                    f"{Path(found[subject]).name} and {path.name}; expected one prior per subject"
                )
            found[subject] = str(path)
    return found


def _subject_path(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--checkpoint-for: expected SUBJECT=PATH, got {text!r}")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"--checkpoint-for {name}: {path} is not a file")
    return name, path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=DATA, help="holds train_volumes/ and eval/")
    p.add_argument(
        "--subjects", nargs="+", default=None, help=f"subject names, '{REAL}' for the real brain"
    )
    p.add_argument("--cases-per-subject", type=int, default=3)
    p.add_argument("--case-seed", type=int, default=0, help="seed of the case plan")
    p.add_argument(
        "--size", type=int, default=160, help="matrix side (the real brain: larger side)"
    )
    p.add_argument(
        "--real-size",
        type=int,
        default=None,
        help="larger side of the real brain (default: --size, at least 128: at 96 x 75 its 8 ACS "
        "columns give ESPIRiT maps covering 18 %% of the pixels)",
    )
    p.add_argument("--masks", nargs="+", default=list(MASK_CLASSES), choices=MASK_CLASSES)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="mask and sampler seeds")
    p.add_argument("--samples", type=int, default=4, help="posterior samples K (replay default 4)")
    p.add_argument("--nfe", type=int, default=25, help="network evaluations (replay default 25)")
    p.add_argument("--cg-iters", type=int, default=5, help="replay default 5")
    p.add_argument(
        "--cg-select",
        type=int,
        nargs="+",
        default=[],
        help="per-scan choice among these cg_iters by held-back k-space (2D masks; off by default)",
    )
    for rule, where in (("inside", "inside the FOV"), ("cut", "cut by the FOV on both sides")):
        default = getattr(GadgetConfig(), f"cg_iters_{rule}")
        p.add_argument(
            f"--cg-iters-{rule}",
            type=int,
            default=default,
            help=f"cg_iters for line masks with the object {where} (replay default {default}; "
            "0: off)",
        )
    p.add_argument("--l1-weights", type=float, nargs="+", default=list(L1_WEIGHTS))
    p.add_argument(
        "--dilate", type=int, default=4, help="object dilation (pixels) for false signal"
    )
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped prior")
    p.add_argument(
        "--checkpoint-for",
        type=_subject_path,
        action="append",
        default=[],
        metavar="SUBJECT=PATH",
        help="a prior for one subject (e.g. trained without it); repeatable",
    )
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="priors trained without one subject each: a subject gets the one whose card holds it "
        "out (--checkpoint-for wins; other subjects get --checkpoint)",
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 suits a shared 2-core machine)"
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=None, help="markdown table (rewritten per case)")
    p.add_argument("--json", type=Path, default=None, help="per-case records (rewritten per case)")
    p.add_argument("--resume", action="store_true", help="skip records already in --json")
    p.add_argument("--images", type=Path, default=None, help="folder for each record's images")
    p.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite --out (and --figure from --images) from --json",
    )
    p.add_argument("--note", default="", help="a line for the markdown's header")
    p.add_argument("--figure", type=Path, default=None, help="PNG (needs matplotlib: extra 'plot')")
    args = p.parse_args(argv)
    explicit = dict(args.checkpoint_for)
    try:
        from_dir = held_out_priors(args.checkpoint_dir) if args.checkpoint_dir else {}
    except ValueError as err:
        p.error(str(err))
    args.checkpoint_for = {**from_dir, **explicit}
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("diffusion_core").setLevel(logging.WARNING)
    run(parse_args())
