"""Files that must never be seen half-written, and the JSONL training log.

Every file the toolkit writes for later (checkpoints, configs, results, plots) goes through ``atomic_write``:
the data goes to a temporary file in the same folder, is flushed to disk and renamed over the old file, so a
crash or Ctrl-C leaves either the old file or the new one. Temporary files are named ``.NAME.tmp-PID``;
the next write of NAME removes those of processes that have ended, and ``remove_stale_temporaries`` clears a
whole folder that one process owns (a run's checkpoints, under the run's lock).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import IO

from mt.errors import MTError

__all__ = ["append_jsonl", "atomic_write", "exclusive_lock", "read_jsonl", "remove_stale_temporaries", "sha256_file"]

log = logging.getLogger("mt")


def atomic_write(path: str | Path, data: str | bytes | Callable[[IO[bytes]], None], what: str = "file") -> None:
    """Write ``data`` (text, bytes, or a function that writes into a binary file) to ``path`` atomically.
    ``what`` names the file in the error message ("checkpoint", "config" ...)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove_dead_writers_temporaries(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "inline_container" not in str(e):
            raise  # not a write that failed: torch.save reports one as a RuntimeError of its C++ file writer
        why = (e.strerror or str(e)) if isinstance(e, OSError) else \
            "the write stopped part-way (a full disk, a quota or a file-size limit)"
        raise MTError(f"cannot write {what} {path}: {why}{_space_left(path.parent)}; the previous {what} is "
                      "intact") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


@contextlib.contextmanager
def exclusive_lock(path: Path, holder: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) while the block runs; the file names its holder.
    Another holder is a one-line ``MTError`` naming it. The lock is the kernel's (``flock``): it ends with the
    process, so a killed holder leaves nothing to clean up. No lock where the OS has no ``fcntl`` (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise MTError(f"{path.parent} is in use by {f.read().strip() or 'another process'}: wait for it to end "
                          "or stop it; one process writes a run at a time") from None
        f.seek(0)
        f.truncate()
        f.write(f"{holder} (PID {os.getpid()})\n")
        f.flush()
        yield


def _space_left(folder: Path) -> str:
    """" (N MB free)" when the disk of ``folder`` is nearly full (the likely reason a write failed), else ""."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f" (the disk holding it has {free / 1e6:,.0f} MB free)" if free < 1 << 30 else ""


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporary files of writes cut short by SIGKILL or a full disk."""
    for stale in Path(folder).glob(".*.tmp-*"):
        log.warning("removing %s, an incomplete write of an earlier run", stale.name)
        stale.unlink()


def _remove_dead_writers_temporaries(path: Path, quiet_for_s: float = 60.0) -> None:
    """Delete the ``.NAME.tmp-PID`` files of earlier writes of ``path`` whose process is gone (killed, or stopped by
    a full disk before it could clean up). A temporary is left alone while its PID runs on this machine, or while it
    changed in the last minute (a writer on another machine sharing the folder)."""
    for stale in path.parent.glob(f".{glob_escape(path.name)}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[1]
        try:
            if not pid.isdigit() or _running(int(pid)) or time.time() - stale.stat().st_mtime < quiet_for_s:
                continue
            stale.unlink()
        except OSError:
            continue
        log.warning("removed %s, an incomplete write by process %s, which has ended", stale.name, pid)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON record to a log (one line each)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        raise MTError(f"cannot write the training log {path}: {e.strerror or e}") from None


def read_jsonl(path: Path, kind: str | None = None) -> list[dict]:
    """The records of a JSONL log (only those whose ``kind`` is ``kind`` when given); [] for a missing file.
    A last line cut short by a crash is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            continue
        if record is not None and (kind is None or record.get("kind") == kind):
            records.append(record)
    return records
