"""Processes under a wall-clock bound and a memory cap, and what they cost."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Entry points run with one thread each: the machine is shared.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MEMORY_CAP_MB = 3000.0  # a case above this is stopped and counted as not ending within its bound


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident (VmRSS) or peak resident (VmHWM) memory of ``pid`` in MB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


@dataclass
class Finished:
    returncode: int | None  # None: stopped at the bound or the cap
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float
    over: str = ""  # "time" or "memory" when stopped


def run_bounded(
    command: list[str], bound_s: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Finished:
    """Run ``command``, stop it after ``bound_s`` or above the memory cap."""
    started = time.monotonic()
    with open(os.devnull, "rb") as stdin:
        process = subprocess.Popen(
            command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            cwd=cwd, start_new_session=True,
        )  # fmt: skip
    peak, over = 0.0, ""
    out_chunks: list[bytes] = []
    try:
        while True:
            try:
                out, err = process.communicate(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                peak = max(peak, rss_mb(process.pid, "VmHWM"))
                if time.monotonic() - started > bound_s:
                    over = "time"
                elif peak > MEMORY_CAP_MB:
                    over = "memory"
                if over:
                    os.killpg(process.pid, signal.SIGKILL)
                    out, err = process.communicate()
                    break
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    del out_chunks
    return Finished(
        None if over else process.returncode,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        time.monotonic() - started,
        peak,
        over,
    )
