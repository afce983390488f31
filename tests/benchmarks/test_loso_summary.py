"""The leave-one-subject-out summary: per-variant medians and the paired aug - plain difference."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization import Record  # noqa: E402
from benchmarks.loso_summary import comparison_table, write_summary  # noqa: E402

MASK = "R=4 1D random"


def _record(case: str, psnr_pm: float, psnr_l1: float, group: str = "held out") -> Record:
    values = dict.fromkeys(
        (
            "psnr_object_pm psnr_object_l1 ssim_pm ssim_l1 margin_object within_2std "
            "false_signal_pm false_signal_l1 false_signal_ref l1_weight seconds_pm seconds_l1"
        ).split(),
        math.nan,
    )
    return Record(
        case, "colin27", group, MASK, 0, psnr_pm=psnr_pm, psnr_l1=psnr_l1,
        margin=psnr_pm - psnr_l1, checkpoint="p", **values,
    )  # fmt: skip


def test_comparison_pairs_cases_and_marks_priors_that_saw_the_subject() -> None:
    records = {
        "aug": [_record("a", 31.0, 30.0), _record("b", 28.0, 29.0), _record("c", 33.0, 30.0)],
        "plain": [_record("a", 30.5, 30.0), _record("b", 28.5, 29.0)],  # no case c
        "shipped": [_record("a", 32.0, 30.0, "seen by prior")],
    }
    row = next(line for line in comparison_table(records) if MASK in line)
    cells = [c.strip() for c in row.split("|")][1:-1]
    # cases a, b, c; aug margins +1, -1, +3 -> +1; plain +0.5, -0.5 -> 0; shipped +2 (saw it)
    assert cells == ["colin27", MASK, "3", "+1.00", "+0.00", "+2.00*", "+0.00 (n=2)"]


def test_summary_reads_cards_and_bench_files(tmp_path: Path) -> None:
    (tmp_path / "aug").mkdir()
    (tmp_path / "bench").mkdir()
    card = {
        "validation_subjects": ["colin27"],
        "training": {"steps": 1200, "seconds": 390.0, "validation_loss": 0.031, "device": "GPU",
                     "data_config": {"augment": {"zoom_range": [0.6, 1.5]}}},
    }  # fmt: skip
    (tmp_path / "aug" / "colin27.json").write_text(json.dumps(card))
    (tmp_path / "aug" / "colin27.state.json").write_text("{}")  # not a card
    (tmp_path / "patch").mkdir()
    patch_card = {**card, "denoiser": {"class": "PatchDenoiser", "sigma_data": 0.5, "patch": 64}}
    (tmp_path / "patch" / "colin27.json").write_text(json.dumps(patch_card))
    rows = [asdict(_record("a", 31.0, 30.0))]
    (tmp_path / "bench" / "aug__colin27.json").write_text(json.dumps(rows))
    (tmp_path / "bench" / "patch__colin27.json").write_text(
        json.dumps([asdict(_record("a", 32.5, 30.0))])
    )
    text = write_summary(tmp_path, tmp_path / "s.md", tmp_path / "s.json", "")
    assert "| aug | whole image | colin27 | 1200 | 6.5 | 0.0310 | True | GPU |" in text
    assert "| patch | patch 64 | colin27 | 1200 | 6.5 | 0.0310 | True | GPU |" in text
    assert f"| colin27 | {MASK} | 1 | +1.00 | +2.50 | - |" in text  # aug, patch; no plain
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["records"]["aug"][0]["margin"] == 1.0 and len(saved["priors"]) == 2
