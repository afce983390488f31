"""Sweep sampler settings (any ``ReconConfig`` field) on the real 8-coil brain, beside L1-wavelet.

Cases and rows as in ``benchmarks/prior_quality.py`` (same masks, ESPIRiT maps from the calibration
region, same metrics and uncertainty calibration); every combination of the ``--vary`` values is
one row, all from the same seed, so the rows differ only by the setting.

    python benchmarks/setting_sweep.py --sampler dds --samples 2 --vary dc_scale 3 10 30 --vary cg_iters 5 15
    python benchmarks/setting_sweep.py --sampler dps --cases "R=4" --samples 1 --vary nfe 50 --vary zeta 1 5 10 20
    python benchmarks/setting_sweep.py --checkpoint default other.safetensors --vary nfe 50   # compare priors
    python benchmarks/setting_sweep.py --samples 8 --seeds 0 1 2 3 4 --vary cg_iters 5 10

With several ``--seeds`` every seed draws new masks (and sampler noise); after the rows a summary
gives, per case and setting, the median PSNR over the seeds and the median, smallest and largest
difference to L1-wavelet on the same mask (one mask is a noisy measurement of a method's quality),
over the whole image and over the object only.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.prior_quality import (  # noqa: E402
    EVAL,
    HELD_OUT,
    Case,
    Row,
    classical_rows,
    eval_brain_cases,
    held_out_case,
    print_table,
    sampler_row,
)
from diffusion_core.checkpoint import load_checkpoint  # noqa: E402
from diffusion_core.denoiser import PreconditionedDenoiser  # noqa: E402
from diffusion_core.espirit import espirit_maps  # noqa: E402
from diffusion_core.priors import prior_path  # noqa: E402
from diffusion_core.reconstruct import SAMPLERS, ReconConfig  # noqa: E402

# sampler and num_samples have their own options
FIELDS = {
    f.name: f.type
    for f in dataclasses.fields(ReconConfig)
    if f.name not in ("sampler", "num_samples")
}


def parse_value(name: str, text: str) -> object:
    """``text`` as the type of ReconConfig field ``name`` (int, float or str)."""
    kind = str(FIELDS[name])
    if "int" in kind:
        return int(text)
    if "float" in kind:
        return float(text)
    return text


def settings(vary: list[list[str]]) -> list[dict[str, object]]:
    """Every combination of the ``--vary NAME V1 V2 ...`` values."""
    for name, *_ in vary:
        if name not in FIELDS:
            raise SystemExit(
                f"--vary {name}: not a ReconConfig field; expected one of {sorted(FIELDS)}"
            )
    axes = [[(name, parse_value(name, v)) for v in values] for name, *values in vary]
    return [dict(combo) for combo in itertools.product(*axes)]


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sampler", default="dds", choices=SAMPLERS)
    p.add_argument(
        "--vary", nargs="+", action="append", default=[], metavar="NAME V", help="field and values"
    )
    p.add_argument("--samples", type=int, default=4, help="posterior samples K per row")
    p.add_argument(
        "--cases", nargs="+", default=["R=4", "R=8 1D"], help="case name prefixes ('held-out' too)"
    )
    p.add_argument(
        "--checkpoint",
        nargs="+",
        default=["default"],
        help="priors to compare on the same masks ('default': the shipped prior)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="network under bfloat16 autocast")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="mask and sampler seeds (one run each)"
    )
    args = p.parse_args()
    if any(len(v) < 2 for v in args.vary):
        raise SystemExit("--vary: expected a field name and at least one value")
    grid = settings(args.vary) or [{}]
    device = torch.device(args.device)
    priors = {name: _load(name, device, args.bf16) for name in args.checkpoint}
    rows = []
    for seed in args.seeds:
        for case in seed_cases(args.cases, seed):
            maps = espirit_maps(case.kspace, case.mask)
            classical, _ = classical_rows(case, maps)
            rows += [
                dataclasses.replace(r, setting=f"{r.setting} seed={seed}")
                for r in classical
                if r.method == "L1-wavelet"
            ]
            for (name, denoiser), setting in itertools.product(priors.items(), grid):
                config = ReconConfig(sampler=args.sampler, num_samples=args.samples, **setting)  # type: ignore[arg-type]
                row, _, _ = sampler_row(case, maps, denoiser, config, device, seed)
                label = " ".join(f"{k}={v}" for k, v in setting.items())
                if len(priors) > 1:
                    label = f"prior={Path(name).stem} {label}"
                rows.append(
                    dataclasses.replace(
                        row, setting=f"{label} K={args.samples} seed={seed}".strip()
                    )
                )
                logging.info("%s %s seed %d: %.2f dB", case.name, label, seed, row.psnr)
    print(f"checkpoints: {', '.join(args.checkpoint)}{' (bf16 autocast)' if args.bf16 else ''}")
    print_table(rows)
    if len(args.seeds) > 1:
        print_seed_summary(rows)


def _load(name: str, device: torch.device, bf16: bool) -> PreconditionedDenoiser:
    denoiser = load_checkpoint(prior_path(name), device=device, autocast_bf16=bf16)
    return denoiser.requires_grad_(False)


def seed_cases(prefixes: list[str], seed: int) -> list[Case]:
    """The prior_quality cases (masks drawn with ``seed``) whose names start with a prefix."""
    cases = eval_brain_cases(EVAL, seed=seed)
    if any(c.startswith("held-out") for c in prefixes) and HELD_OUT.is_file():
        cases.append(held_out_case(HELD_OUT, seed=seed))
    cases = [c for c in cases if any(c.name.startswith(prefix) for prefix in prefixes)]
    if not cases:
        raise SystemExit(f"--cases {prefixes}: no case name starts with these")
    return cases


def _without_seed(setting: str) -> tuple[str, int]:
    label, _, seed = setting.rpartition("seed=")
    return label.strip(), int(seed)


def print_seed_summary(rows: list[Row]) -> None:
    """Per case and setting: median PSNR over the seeds, and PSNR minus L1-wavelet's on the same
    mask (median, smallest, largest), over the whole image and over the object only."""
    l1 = {
        (r.case, _without_seed(r.setting)[1]): (r.psnr, r.psnr_object)
        for r in rows
        if r.method == "L1-wavelet"
    }
    groups: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for r in rows:
        label, seed = _without_seed(r.setting)
        name = "L1-wavelet (best weight per mask)" if r.method == "L1-wavelet" else label
        whole, obj = l1[(r.case, seed)]
        groups.setdefault((r.case, name), []).append((r.psnr, r.psnr - whole, r.psnr_object - obj))
    print()
    print(
        "| case | setting | seeds | median PSNR dB | median - L1 | min - L1 | max - L1 "
        "| object: median - L1 | object: min - L1 | object: max - L1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (case, name), values in groups.items():
        psnrs = [v[0] for v in values]
        spread = []
        for gains in ([v[1] for v in values], [v[2] for v in values]):
            spread += [statistics.median(gains), min(gains), max(gains)]
        print(
            f"| {case} | {name} | {len(values)} | {statistics.median(psnrs):.2f} | "
            + " | ".join(f"{g:+.2f}" for g in spread)
            + " |"
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
