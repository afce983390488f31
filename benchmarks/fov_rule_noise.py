"""One replay option at two values through the replay CLI (with a noise scan), against BART, on
heads of ``replay_check.py``'s case plans with their noise level overridden: what set
``FOV_RULE_NOISE_MEASURED`` (cg_iters_inside 10 against 5) and what sets the data trust of noisy
scans (cg_iters 3 against 5; benchmarks/results/fov_rule_noise.md).

    PYTHONPATH=$PWD python benchmarks/fov_rule_noise.py --heads 11:0 11:1 7:1 --matrix 192 \
        --noise 0.03 0.02 --out /tmp/n192.json
    PYTHONPATH=$PWD python benchmarks/fov_rule_noise.py --heads 11:0 11:1 7:1 --matrix 192 \
        --noise 0.03 --option=--cg-iters --values 3 5 --masks "R=4 1D equispaced"

``--heads PLAN_SEED:INDEX``: case ``INDEX`` of ``case_plan(niivue_FLAIR, 4, matrix, PLAN_SEED)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization_cases import case_plan, load_subject, make_case  # noqa: E402
from benchmarks.replay_check import check_case  # noqa: E402


def replay_options(option: str, value: int) -> argparse.Namespace:
    """``replay_check.check_case``'s options: white noise with a 256-sample noise scan, BART at
    the better of weights 0.003 / 0.01, the replay at its defaults but ``option value``."""
    return argparse.Namespace(
        noise_mixing=0.0,
        noise_samples=256,
        l1_weights=[0.003, 0.01],
        replay_args=[option, str(value)],
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--heads", nargs="+", required=True, help="caseseed:index")
    p.add_argument("--matrix", type=int, nargs="+", required=True)
    p.add_argument("--noise", type=float, nargs="+", required=True)
    p.add_argument("--masks", nargs="+", default=["R=4 1D random"])
    p.add_argument("--option", default="--cg-iters-inside", help="the replay option compared")
    p.add_argument("--values", type=int, nargs=2, default=[10, 5], metavar=("A", "B"))
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    subject = load_subject(a.data_dir / "train_volumes" / "niivue_FLAIR.nii.gz")
    first, second = a.values
    rows = []
    for m in a.matrix:
        for h in a.heads:
            cs, i = map(int, h.split(":"))
            spec = case_plan(subject, 4, (m, m), cs)[i]
            for noise in a.noise:
                case = make_case(
                    subject, spec.slice_spec, spec.coils, noise, spec.placement, spec.seed
                )
                for mask in a.masks:
                    res = {
                        v: check_case(case, mask, 0, replay_options(a.option, v)) for v in a.values
                    }
                    row = dict(
                        matrix=m,
                        head=h,
                        case=case.meta.name,
                        noise=noise,
                        mask=mask,
                        option=a.option,
                        values=[first, second],
                        cg_used=[res[first].cg_iters, res[second].cg_iters],
                        margins=[res[first].margin, res[second].margin],
                        diff=res[first].margin - res[second].margin,
                        coverage=[res[first].coverage, res[second].coverage],
                    )
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if a.out:
        a.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
