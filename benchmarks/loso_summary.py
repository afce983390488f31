"""Leave-one-subject-out summary of a ``scripts/gpu_loso.sh`` folder: priors and benchmark.

Reads the model cards ``LOSO_DIR/<variant>/<subject>.json`` (variant ``aug``: trained with
``--augment``; ``plain``: the shipped recipe's augmentation; ``patch``: a PaDIS patch prior,
``--augment --patch``) and the records
``LOSO_DIR/bench/<variant>__<subject>.json`` of ``benchmarks/generalization.py --json``
(variant ``shipped``: the shipped prior on the same cases). Writes markdown with

1. one row per prior: held-out subject, steps, minutes, validation loss (unaugmented crops of the
   held-out subject, so comparable across variants), whether it was augmented;
2. per subject and mask class, the median over cases of the PSNR margin over L1-wavelet of each
   variant, and the paired difference aug - plain on the same cases, masks and seeds (a ``*``
   marks numbers of a prior that saw the subject in training: not leave-one-subject-out);
3. each variant's ``summary_table`` (minimum and median over cases).

    python benchmarks/loso_summary.py --loso-dir out/loso --out benchmarks/results/loso_h200.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization import Record, _load_records, summary_table  # noqa: E402
from benchmarks.generalization_cases import MASK_CLASSES  # noqa: E402

VARIANTS = ("aug", "plain", "patch", "shipped")


def prior_rows(loso_dir: Path) -> list[dict[str, object]]:
    """One dict per trained prior (card) in ``loso_dir/<variant>/``."""
    rows = []
    for variant in VARIANTS[:-1]:  # the trained ones
        for card_path in sorted((loso_dir / variant).glob("*.json")):
            if card_path.name.endswith(".state.json"):
                continue
            card = json.loads(card_path.read_text())
            training = card.get("training", {})
            rows.append(
                {
                    "variant": variant,
                    "held_out": card.get("validation_subjects", []),
                    "steps": training.get("steps"),
                    "minutes": round(float(training.get("seconds", 0.0)) / 60, 2),
                    "validation_loss": training.get("validation_loss"),
                    "augment": training.get("data_config", {}).get("augment") is not None,
                    "device": training.get("device"),
                    "prior": _prior_kind(card),
                }
            )
    return rows


def _prior_kind(card: dict) -> str:
    """'whole image' or 'patch N' from a model card's denoiser block."""
    block = card.get("denoiser", {})
    return f"patch {block.get('patch')}" if block.get("class") == "PatchDenoiser" else "whole image"


def load_bench(loso_dir: Path) -> dict[str, list[Record]]:
    """Variant -> its records from every ``bench/<variant>__<subject>.json``."""
    records: dict[str, list[Record]] = {}
    for path in sorted((loso_dir / "bench").glob("*__*.json")):
        variant = path.stem.split("__")[0]
        records.setdefault(variant, []).extend(_load_records(path))
    return records


def _median_margin(rows: list[Record]) -> float | None:
    """Median over cases of each case's median margin over its seeds."""
    by_case: dict[str, list[float]] = {}
    for r in rows:
        by_case.setdefault(r.case, []).append(r.margin)
    return statistics.median(statistics.median(v) for v in by_case.values()) if by_case else None


def comparison_table(records: dict[str, list[Record]]) -> list[str]:
    """Markdown lines: per subject and mask, each variant's median margin and aug - plain."""
    variants = [v for v in VARIANTS if v in records] + sorted(set(records) - set(VARIANTS))
    head = " | ".join(f"{v} margin dB" for v in variants)
    lines = [f"| subject | mask | cases | {head} | aug - plain, paired median dB |"]
    lines.append("|---" * (4 + len(variants)) + "|")
    subjects = sorted({r.subject for rows in records.values() for r in rows})
    for subject in subjects:
        for mask in MASK_CLASSES:
            cells, cases = [], set()
            for v in variants:
                rows = [r for r in records[v] if r.subject == subject and r.mask == mask]
                cases |= {r.case for r in rows}
                value = _median_margin(rows)
                seen = any(r.group == "seen by prior" for r in rows)
                cells.append("-" if value is None else f"{value:+.2f}{'*' if seen else ''}")
            if not cases:
                continue
            aug = {
                r.key: r for r in records.get("aug", []) if r.subject == subject and r.mask == mask
            }
            plain = [r for r in records.get("plain", []) if r.key in aug]
            diffs = [aug[r.key].psnr_pm - r.psnr_pm for r in plain]
            paired = f"{statistics.median(diffs):+.2f} (n={len(diffs)})" if diffs else "-"
            lines.append(
                f"| {subject} | {mask} | {len(cases)} | " + " | ".join(cells) + f" | {paired} |"
            )
    return lines


def write_summary(loso_dir: Path, out: Path | None, json_out: Path | None, note: str) -> str:
    priors, records = prior_rows(loso_dir), load_bench(loso_dir)
    lines = [
        "# Leave-one-subject-out: priors trained without one subject, benchmarked on it",
        "",
        f"Command: `python benchmarks/loso_summary.py --loso-dir {loso_dir}`"
        + (f" ({note})" if note else ""),
        "",
        "## Priors",
        "",
        "| variant | prior | held out | steps | minutes | validation loss | augment | device |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in priors:
        loss = p["validation_loss"]
        shown = f"{loss:.4f}" if isinstance(loss, float) else "-"
        held = ", ".join(map(str, p["held_out"]))  # type: ignore[call-overload]
        lines.append(
            f"| {p['variant']} | {p['prior']} | {held} | {p['steps']} | {p['minutes']} | {shown} "
            f"| {p['augment']} | {p['device']} |"
        )
    lines += [
        "",
        "## Margin over L1-wavelet per held-out subject (median over cases; * the prior saw it)",
        "",
        *comparison_table(records),
    ]
    for variant, rows in records.items():
        lines += ["", f"## {variant}: min / median over cases", "", *summary_table(rows)]
    text = "\n".join(lines) + "\n"
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "priors": priors,
            "records": {v: [asdict(r) for r in rs] for v, rs in records.items()},
        }
        json_out.write_text(json.dumps(payload, indent=1))
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loso-dir", type=Path, required=True, help="LOSO_DIR of scripts/gpu_loso.sh")
    p.add_argument("--out", type=Path, default=None, help="markdown")
    p.add_argument("--json", type=Path, default=None, help="priors and records")
    p.add_argument("--note", default="", help="appended to the command line shown")
    args = p.parse_args(argv)
    print(write_summary(args.loso_dir, args.out, args.json, args.note))


if __name__ == "__main__":
    main()
