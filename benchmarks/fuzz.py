"""The long fuzz run over the three entry points: >= 1,000 cases, a table, a results file.

    python benchmarks/fuzz.py [--cases 1100] [--minutes 24] [--bound 10] [--label main]
    python benchmarks/fuzz.py --one CATEGORY FAMILY SEED     # re-run one case (a reproducer)

Categories (each a thread, cases one after another within it): ``file-api`` (mutated ISMRMRD
files through ``gadget.replay.replay`` in a forked worker with the real reconstructor),
``file-cli`` (the same through ``python -m gadget.cli replay``), ``serve`` (MRD byte streams to
``gadgetron-diffusion serve``), ``gadgetron-listen`` (Gadgetron-side streams to
``python -m gadget.listen``) and ``gadgetron-execute`` (to ``python -m gadgetron PORT
gadget.handlers handle_acquisitions``, which connects to the harness). Cheap settings
(``--nfe 2 --samples 1 --cg-iters 2``, a small random-weight prior, 32 x 32 matrices, one thread
per process). The verdicts (hang, crash, lost, unclear) are defined in ``tests/fuzz/fuzzkit/rules.py``.
Writes ``benchmarks/results/fuzz_<label>.md``.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))

from fuzzkit.campaign import FAMILIES, Campaign  # noqa: E402
from fuzzkit.rules import Outcome, table  # noqa: E402

SHARES = {"serve": 0.42, "gadgetron-listen": 0.22, "file-api": 0.26, "file-cli": 0.04,
          "gadgetron-execute": 0.06}  # fmt: skip
LANES = [["file-api"], ["serve"], ["gadgetron-listen"], ["file-cli", "gadgetron-execute"]]


def plan(total: int, seed: int) -> dict[str, list[tuple[str, int]]]:
    """(family, seed) per category: families in turn, seeds drawn from one generator."""
    rng = random.Random(seed)
    cases = {}
    for category, share in SHARES.items():
        families = FAMILIES[category]
        count = max(len(families), round(total * share))
        cases[category] = [
            (families[i % len(families)], rng.randrange(2**20)) for i in range(count)
        ]
    return cases


def run_lane(
    campaign: Campaign,
    lane: list[str],
    cases: dict,
    deadline: float,
    outcomes: list[Outcome],
    skipped: dict[str, int],
    lock: threading.Lock,
) -> None:
    for category in lane:
        for i, (family, seed) in enumerate(cases[category]):
            if time.monotonic() > deadline:
                skipped[category] = len(cases[category]) - i
                break
            try:
                outcome = campaign.run(category, family, seed)
            except Exception as error:  # the harness itself failed on this case: say so
                outcome = Outcome(
                    category,
                    f"{family}: seed {seed}",
                    crash=True,
                    notes=[f"harness error: {type(error).__name__}: {error}"],
                )
            with lock:
                outcomes.append(outcome)
                if len(outcomes) % 50 == 0:
                    print(f"{len(outcomes)} cases ...", flush=True)


def report(
    outcomes: list[Outcome], skipped: dict[str, int], args: argparse.Namespace, seconds: float
) -> str:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    failing = [o for o in outcomes if o.failures()]
    lines = [
        f"# Fuzz run: {args.label}",
        "",
        f"`python benchmarks/fuzz.py --cases {args.cases} --minutes {args.minutes} --bound "
        f"{args.bound} --seed {args.seed} --label {args.label}` at commit `{commit}`, "
        f"{len(outcomes)} cases in {seconds / 60:.1f} min on {os.cpu_count()} CPU cores "
        f"(load average at the end {os.getloadavg()[0]:.1f}).",
        f"Per-case bound {args.bound:.0f} s for streams (the reply {3 * args.bound:.0f} s in "
        f"execute mode, which loads the prior after connecting; {3 * args.bound:.0f} s for the "
        f"replay API, {4 * args.bound:.0f} s for the replay CLI), memory cap 3000 MB. "
        + (f"Not run (time budget): {skipped}." if skipped else "All planned cases ran."),
        "",
        table(outcomes),
        "",
        "## By family",
        "",
        table(outcomes, by="family"),
        "",
        f"## Failing cases ({len(failing)}; up to 2 per family and kind of failure)",
        "",
    ]
    shown: dict[str, int] = {}
    for o in failing:
        key = f"{o.category}/{o.family}/{o.failures()[0].split(':')[0].split()[0]}"
        shown[key] = shown.get(key, 0) + 1
        if shown[key] <= 2:
            lines.append(f"- {o.describe()}")
    return "\n".join(lines) + "\n"


def printable(text: str) -> str:
    """``text`` with control characters (a fuzzed message can carry NUL and others) as \\xNN,
    so that the results file stays a text file."""
    return "".join(c if c in "\n\t" or ord(c) >= 32 else f"\\x{ord(c):02x}" for c in text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1100, help="cases planned in all")
    parser.add_argument("--minutes", type=float, default=24, help="stop starting cases after this")
    parser.add_argument("--bound", type=float, default=10, help="seconds per stream case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="run", help="results/fuzz_<label>.md")
    parser.add_argument(
        "--folder", type=Path, default=None, help="scratch folder (default: a temp one)"
    )
    parser.add_argument(
        "--one", nargs=3, metavar=("CATEGORY", "FAMILY", "SEED"), help="run one case and print it"
    )
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="fuzz-"))
    if args.one:
        campaign = Campaign(folder, bound_s=args.bound)
        try:
            outcome = campaign.run(args.one[0], args.one[1], int(args.one[2]))
        finally:
            campaign.close()
        print(outcome.describe())
        return 1 if outcome.failures() else 0
    started = time.monotonic()
    campaign = Campaign(folder, bound_s=args.bound)
    cases = plan(args.cases, args.seed)
    outcomes: list[Outcome] = []
    skipped: dict[str, int] = {}
    lock = threading.Lock()
    deadline = started + 60 * args.minutes
    lanes = [threading.Thread(target=run_lane, args=(campaign, lane, cases, deadline, outcomes,
                                                     skipped, lock)) for lane in LANES]  # fmt: skip
    try:
        for lane in lanes:
            lane.start()
        for lane in lanes:
            lane.join()
    finally:
        campaign.close()
    text = report(outcomes, skipped, args, time.monotonic() - started)
    every = folder / "outcomes.txt"
    every.write_text("\n".join(o.describe() for o in outcomes) + "\n")
    print(f"every case: {every}")
    print(text)
    out = ROOT / "benchmarks" / "results" / f"fuzz_{args.label}.md"
    out.write_text(printable(text))
    print(f"written {out}")
    failures = sum(bool(o.failures()) for o in outcomes)
    return 0 if failures == 0 and len(outcomes) >= 1000 else 1


if __name__ == "__main__":
    raise SystemExit(main())
