"""One `mt translate` process, timed from start to exit, with its peak resident memory: the whole-process figures
of the benchmarks (start-up and model loading included)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["timed_translate"]


def timed_translate(run: Path, source: Path, output: str | Path = os.devnull, beam: int | None = None,
                    ensemble: list[Path] = (), overrides: list[str] = ()) -> tuple[float, float]:
    """`mt translate --run RUN --input SOURCE --output OUTPUT [--beam B] [--ensemble ...] [decode.k=v ...]` ->
    (seconds, peak resident MiB)."""
    args = [sys.executable, "-m", "mt", "translate", "--run", str(run), "--input", str(source), "--output", str(output)]
    args += (["--beam", str(beam)] if beam else []) + (["--ensemble", *map(str, ensemble)] if ensemble else [])
    start = time.perf_counter()
    child = subprocess.Popen(args + list(overrides), stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"error: mt translate --run {run} failed (status {status})")
    return time.perf_counter() - start, usage.ru_maxrss / 1024
