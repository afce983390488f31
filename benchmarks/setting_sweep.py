"""Sweep sampler settings (any ``ReconConfig`` field) on the real 8-coil brain, beside L1-wavelet.

Cases and rows as in ``benchmarks/prior_quality.py`` (same masks, ESPIRiT maps from the calibration
region, same metrics and uncertainty calibration); every combination of the ``--vary`` values is
one row, all from the same seed, so the rows differ only by the setting.

    python benchmarks/setting_sweep.py --sampler dds --samples 2 --vary dc_scale 3 10 30 --vary cg_iters 5 15
    python benchmarks/setting_sweep.py --sampler dps --cases "R=4" --samples 1 --vary nfe 50 --vary zeta 1 5 10 20
    python benchmarks/setting_sweep.py --checkpoint other.safetensors --vary nfe 50   # compare priors
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.prior_quality import (  # noqa: E402
    EVAL,
    HELD_OUT,
    classical_rows,
    eval_brain_cases,
    held_out_case,
    print_table,
    sampler_row,
)
from diffusion_core.checkpoint import load_checkpoint  # noqa: E402
from diffusion_core.espirit import espirit_maps  # noqa: E402
from diffusion_core.priors import DEFAULT_PRIOR_PATH  # noqa: E402
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
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_PRIOR_PATH)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if any(len(v) < 2 for v in args.vary):
        raise SystemExit("--vary: expected a field name and at least one value")
    grid = settings(args.vary) or [{}]
    device = torch.device(args.device)
    denoiser = load_checkpoint(args.checkpoint, device=device).requires_grad_(False)
    cases = eval_brain_cases(EVAL, seed=args.seed)
    if any(c.startswith("held-out") for c in args.cases) and HELD_OUT.is_file():
        cases.append(held_out_case(HELD_OUT, seed=args.seed))
    cases = [c for c in cases if any(c.name.startswith(prefix) for prefix in args.cases)]
    if not cases:
        raise SystemExit(f"--cases {args.cases}: no case name starts with these")
    rows = []
    for case in cases:
        maps = espirit_maps(case.kspace, case.mask)
        classical, _ = classical_rows(case, maps)
        rows += [r for r in classical if r.method == "L1-wavelet"]
        for setting in grid:
            config = ReconConfig(sampler=args.sampler, num_samples=args.samples, **setting)  # type: ignore[arg-type]
            row, _, _ = sampler_row(case, maps, denoiser, config, device, args.seed)
            label = " ".join(f"{k}={v}" for k, v in setting.items())
            calibration = row.within_2std if args.samples > 1 else float("nan")  # no std from K=1
            rows.append(
                dataclasses.replace(
                    row, setting=f"{label} K={args.samples}", within_2std=calibration
                )
            )
            logging.info("%s %s: %.2f dB", case.name, label, row.psnr)
    print(f"checkpoint: {args.checkpoint}")
    print_table(rows)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
