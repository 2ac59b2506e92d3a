"""Memory of a running process, read from Linux's /proc and getrusage: what every benchmark reports beside its
throughput, and how the benchmarks measure their children."""

from __future__ import annotations

import resource
from pathlib import Path

__all__ = ["memory_record", "status_kib"]


def status_kib(pid: int | str, field: str) -> int:
    """A KiB field of /proc/PID/status, e.g. "VmHWM" (peak RSS) or "RssAnon" (resident memory that is not a mapped
    file); 0 when it cannot be read (not Linux, or the process has ended)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def memory_record() -> dict[str, float]:
    """This process's peak resident memory so far and its anonymous resident memory now (GiB)."""
    return {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "rss_anon_gib": round(status_kib("self", "RssAnon") / 2**20, 3)}
