"""One mutated ISMRMRD file through ``replay``: the Python API (in a forked worker) or the CLI.

The worker also reads the mutated input (what must come back) and the output (what came back),
so a file that breaks the HDF5 library can only take the worker down, never the harness.
"""

from __future__ import annotations

import logging
import multiprocessing
import resource
import sys
import time
import traceback
from pathlib import Path

from fuzzkit.procs import ENV, MEMORY_CAP_MB, rss_mb, run_bounded
from fuzzkit.rules import Outcome, count_lost, unclear_messages

log = logging.getLogger(__name__)
REPLAY_EXIT_CODES = (0, 1, 2)


def _read_items(path: Path, with_images: bool) -> list[object]:
    """Acquisitions (and images, waveforms) stored in ``path``; [] where there are none."""
    import h5py
    import ismrmrd

    if not path.exists() or not h5py.is_hdf5(path):
        return []
    items: list[object] = []
    with h5py.File(path, "r") as f:
        groups = [k for k in f.get("dataset", {}).keys()] if "dataset" in f else []
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False, mode="r") as d:
        if "data" in groups:
            items += [d.read_acquisition(i) for i in range(d.number_of_acquisitions())]
        if "waveforms" in groups:
            items += [d.read_waveform(i) for i in range(d.number_of_waveforms())]
        for g in groups:
            if with_images and g.startswith("image_"):
                items += [d.read_image(g, i) for i in range(d.number_of_images(g))]
    return items


def _expected(source: Path) -> list[object]:
    from fuzzkit.wire import is_noise

    try:
        return [a for a in _read_items(source, with_images=False) if not is_noise(a)]
    except Exception:  # unreadable input: replay must refuse it, nothing is owed back
        return []


def _api(source: Path, output: Path, options: dict[str, str]) -> tuple[int, list[str], str]:
    """(exit code as the CLI would give it, error messages, crash text)."""
    from gadget.config import GadgetConfig
    from gadget.replay import ReplayError, replay

    try:
        result = replay(source, output, GadgetConfig.from_properties(options), progress=False)
    except (ReplayError, ValueError, OSError) as error:
        return 2, [str(error)], ""
    except Exception:
        return -1, [], traceback.format_exc()
    run = result.run
    messages = [*run.failed, *result.unreadable, *([run.stream_error] if run.stream_error else [])]
    # the API's report is the result: no slice in a file without imaging lines is not a failure
    return (0 if result.ok or not (messages or run.slices_done) else 1), messages, ""


def _cli(source: Path, output: Path, options: dict[str, str], bound: float):
    command = [
        sys.executable, "-m", "gadget.cli", "replay", str(source), str(output), "--no-progress",
        "--sampler", options["sampler"], "--nfe", options["nfe"], "--samples", options["num_samples"],
        "--cg-iters", options["cg_iters"], "--checkpoint", options["checkpoint"], "--device", "cpu",
    ]  # fmt: skip
    return run_bounded(command, bound, env=ENV)


def _worker(
    source: str, output: str, mode: str, options: dict[str, str], bound: float, pipe
) -> None:
    logging.disable(logging.CRITICAL)
    import torch

    torch.set_num_threads(1)  # a shared machine: one thread per case
    src, out = Path(source), Path(output)
    outcome = Outcome(f"file-{mode}", "")
    expected = _expected(src)
    started = time.monotonic()
    if mode == "api":
        code, messages, crash = _api(src, out, options)
        outcome.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if crash:
            outcome.crash = True
            outcome.notes.append(crash.strip().splitlines()[-1])
    else:
        done = _cli(src, out, options, bound)
        outcome.peak_rss_mb = done.peak_rss_mb
        if done.over:
            outcome.hang = True
            outcome.notes.append(f"stopped: over the {done.over} bound")
            pipe.send((outcome, time.monotonic() - started))
            return
        code = done.returncode if done.returncode is not None else -1
        lines = done.stderr.splitlines()
        messages = [
            line.split(":", 1)[1].strip() if line.startswith("gadgetron-diffusion:") else line
            for line in lines
            if line.startswith(("gadgetron-diffusion:", "failed:", "skipped:", "stream error:"))
            or " ERROR " in line
            or " CRITICAL " in line
        ]
        if code not in REPLAY_EXIT_CODES:
            outcome.crash = True
            outcome.notes.append(f"exit code {code}: {' | '.join(lines[-3:])[:300]}")
        elif "Traceback (most recent call last)" in done.stderr:
            from fuzzkit.stream_case import traceback_summary

            outcome.unclear.append("traceback in the output: " + traceback_summary(done.stderr))
    outcome.notes.insert(0, f"exit {code}")
    outcome.unclear += unclear_messages(messages)
    if code in (1, 2) and not messages:
        outcome.unclear.append(f"exit {code} without an error message")
    if code in (0, 1):
        try:
            returned = _read_items(out, with_images=True)
        except Exception as error:
            returned = []
            outcome.notes.append(f"output unreadable: {error}")
        outcome.lost = count_lost(expected, returned)
        if outcome.lost:
            outcome.notes.append(
                f"{outcome.lost} of {len(expected)} acquisitions neither imaged nor kept"
            )
    if messages:
        outcome.notes.append(" | ".join(messages)[:400])
    pipe.send((outcome, time.monotonic() - started))


_CONTEXT = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["fuzzkit.file_case", "gadget.replay", "gadget.recon"])
    return _CONTEXT


def run_file_case(
    name: str, source: Path, output: Path, mode: str, options: dict[str, str], bound: float
) -> Outcome:
    """Replay ``source`` into ``output`` (``mode``: "api" or "cli") and judge it."""
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    worker = ctx.Process(
        target=_worker, args=(str(source), str(output), mode, options, bound, send)
    )
    started = time.monotonic()
    worker.start()
    send.close()
    peak, over = 0.0, ""
    limit = bound + (30 if mode == "cli" else 5)  # the CLI bound is enforced by the worker
    while not receive.poll(0.1):
        peak = max(peak, rss_mb(worker.pid or 0, "VmHWM"))
        if not worker.is_alive():
            break
        if time.monotonic() - started > limit:
            over = "time"
        elif mode == "api" and peak > MEMORY_CAP_MB:
            over = "memory"
        if over:
            worker.kill()
            break
    try:
        result = receive.recv() if receive.poll(0) else None
    except EOFError:  # the worker died without a verdict
        result = None
    worker.join(timeout=10)
    seconds = time.monotonic() - started
    if result is None:
        outcome = Outcome(f"file-{mode}", name, seconds=seconds, peak_rss_mb=peak)
        if over:
            outcome.hang = True
            outcome.notes.append(
                f"stopped: over the {over} bound ({bound:.0f} s / {MEMORY_CAP_MB:.0f} MB)"
            )
        else:
            outcome.crash = True
            outcome.notes.append(f"worker died with exit code {worker.exitcode}")
        return outcome
    outcome, _ = result
    outcome.case, outcome.seconds = name, seconds
    outcome.peak_rss_mb = max(outcome.peak_rss_mb, peak)
    return outcome
