"""One `mt translate` process, timed from start to exit, with its peak resident memory: the whole-process figures
of the benchmarks (start-up and model loading included).

The peak is the process's own high-water mark (``VmHWM`` of ``/proc/self/status``), which the process reports as
it exits. ``ru_maxrss`` from ``wait4`` is not: the child is started by fork (or vfork) from the benchmark, and the
kernel records the forked memory's high-water mark when the child execs, so it reports at least the benchmark's
own resident memory (about 1.4 GiB once models are loaded).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["timed_translate"]

# runs `mt ARGS...` and, as it exits, writes its VmHWM in kB to the file named by the first argument
# (`mt translate` ends by os._exit, skipping Python's shutdown and atexit: the report goes in front of it)
_WITH_PEAK = """import atexit, os, runpy, sys
out, quick_exit = sys.argv[1], os._exit
def report():
    with open("/proc/self/status") as status, open(out, "w") as f:
        f.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
def exit_reporting(code):
    report()
    quick_exit(code)
atexit.register(report)
os._exit = exit_reporting
sys.argv = ["mt", *sys.argv[2:]]
runpy.run_module("mt", run_name="__main__", alter_sys=True)
"""


def timed_translate(run: Path, source: Path, output: str | Path = os.devnull, beam: int | None = None,
                    ensemble: list[Path] = (), overrides: list[str] = ()) -> tuple[float, float]:
    """`mt translate --run RUN --input SOURCE --output OUTPUT [--beam B] [--ensemble ...] [decode.k=v ...]` ->
    (seconds, peak resident MiB; where /proc is missing, ``ru_maxrss``, an upper bound)."""
    args = ["translate", "--run", str(run), "--input", str(source), "--output", str(output)]
    args += (["--beam", str(beam)] if beam else []) + (["--ensemble", *map(str, ensemble)] if ensemble else [])
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        own_peak = Path("/proc/self/status").is_file()
        command = [sys.executable, "-c", _WITH_PEAK, str(peak_file)] if own_peak else [sys.executable, "-m", "mt"]
        start = time.perf_counter()
        child = subprocess.Popen(command + args + list(overrides), stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        if status:
            raise SystemExit(f"error: mt translate --run {run} failed (status {status})")
        peak_kb = int(peak_file.read_text()) if own_peak else usage.ru_maxrss
    return seconds, peak_kb / 1024
