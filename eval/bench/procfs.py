"""Memory of a running process, read from Linux's /proc (the benchmarks measure their children with it)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["status_kib"]


def status_kib(pid: int, field: str) -> int:
    """A KiB field of /proc/PID/status, e.g. "VmHWM" (peak RSS) or "RssAnon" (resident memory that is not a mapped
    file); 0 when it cannot be read (not Linux, or the process has ended)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0
