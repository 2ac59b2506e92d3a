"""Killing training at a random point loses at most the work since the last checkpoint; re-running resumes."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import TINY_OVERRIDES

from mt.checkpoint import load_checkpoint
from mt.cli import main


def start_training(run, epochs: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "mt", "train", "--run", str(run), *TINY_OVERRIDES, f"train.max_epochs={epochs}",
            "train.checkpoint_minutes=0.002"]  # a mid-epoch checkpoint after every step or two
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_new_checkpoint(path, old_mtime: int, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while path.stat().st_mtime_ns == old_mtime:
        assert time.time() < deadline, f"{path} was never rewritten"
        time.sleep(0.02)


@pytest.mark.slow
def test_killed_training_resumes_from_its_checkpoint(train_tiny, capsys):
    """SIGKILL, SIGTERM and Ctrl-C (SIGINT), each at a random point of its own training run (the three run at once:
    each process's start-up takes longer than its training until the kill): the last checkpoint is intact, and
    re-running resumes from exactly it."""
    signals = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]
    runs = {sig: train_tiny(1, name=sig.name) for sig in signals}  # prepared runs with one finished epoch
    lasts = {sig: run / "checkpoints" / "last.pt" for sig, run in runs.items()}
    before = {sig: (load_checkpoint(last)["progress"]["step"], last.stat().st_mtime_ns) for sig, last in lasts.items()}
    procs = {sig: start_training(run, epochs=40) for sig, run in runs.items()}
    for sig, proc in procs.items():
        wait_for_new_checkpoint(lasts[sig], before[sig][1])  # training is under way
        time.sleep(random.random())  # then a random point
        proc.send_signal(sig)
    for sig, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        if sig in (signal.SIGTERM, signal.SIGINT):  # Ctrl-C and SIGTERM: checkpoint saved, then exit 130
            assert proc.returncode == 130 and "stopped (interrupted)" in out, (sig.name, err[-2000:])
        else:
            assert proc.returncode == -signal.SIGKILL
        killed_at = load_checkpoint(lasts[sig])["progress"]["step"]  # intact, loadable
        assert killed_at > before[sig][0], sig.name
        capsys.readouterr()
        assert main(["train", "--run", str(runs[sig]), *TINY_OVERRIDES, "train.max_epochs=2"]) == 0  # in-process
        assert not list((runs[sig] / "checkpoints").glob(".*tmp*"))  # a write cut short by the kill is cleaned up
        match = re.search(r"resuming from last.pt: step (\d+)", capsys.readouterr().out)
        assert match and int(match.group(1)) == killed_at, sig.name
        assert load_checkpoint(lasts[sig])["progress"]["step"] >= killed_at


FULL_DISK = r"""
import resource, sys
import torch
from mt.checkpoint import save_checkpoint
from mt.cli import main
from mt.errors import MTError
resource.setrlimit(resource.RLIMIT_FSIZE, (@LIMIT@, @LIMIT@))  # a file may not grow past LIMIT bytes: EFBIG, as a full disk
codes = [main(args) for args in @JOBS@]
try:
    save_checkpoint({"model": {"w": torch.zeros(100_000)}}, @CHECKPOINT@)
    codes.append(0)
except MTError as e:
    print(f"error: {e}", file=sys.stderr)
    codes.append(2)
print(codes)
"""


def test_a_full_disk_is_one_line_and_keeps_the_previous_files(trained_run, tmp_path):
    """Under a real write limit (RLIMIT_FSIZE in a subprocess, not a faked exception), every writer fails with one
    line naming its file and leaves the previous file and no temporary: torch.save's own error included."""
    source = tmp_path / "in.txt"
    source.write_text("the big red dog runs near the small cat\n" * 800, encoding="utf-8")
    model, output, ck = tmp_path / "model.mt", tmp_path / "out.txt", tmp_path / "last.pt"
    for path in (model, output, ck):
        path.write_bytes(b"the previous file")
    jobs = [["export", "--run", str(trained_run), "--output", str(model)],
            ["translate", "--run", str(trained_run), "--input", str(source), "--output", str(output), "--beam", "1"],
            ]
    script = FULL_DISK.replace("@LIMIT@", str(16 * 1024)).replace("@JOBS@", repr(jobs)).replace("@CHECKPOINT@",
                                                                                             repr(str(ck)))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "[2, 2, 2]", result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 3 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for path, line in zip((model, output, ck), errors):
        assert "cannot write" in line and str(path) in line and "intact" in line
        assert path.read_bytes() == b"the previous file"
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_one_writer_per_run_folder(prepared_tiny, tmp_path, capsys):
    """While one process writes a run (here: this test, holding its lock as `mt train` does), a second `mt train`,
    `mt prepare` or `mt average` on it is one line naming the holder, and nothing of the run is touched."""
    from conftest import copy_prepared

    from mt.run import RunDir

    run = copy_prepared(prepared_tiny, tmp_path / "run")
    before = sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*") if p.name != ".lock")
    with RunDir.of(run).writing("train"):
        assert main(["train", "--run", str(run), *TINY_OVERRIDES, "train.max_epochs=1"]) == 2
        assert main(["prepare", "--run", str(run), "--data-dir", str(tmp_path), "--src", "en", "--tgt", "de"]) == 2
        assert main(["average", "--run", str(run), "--last", "2"]) == 2
        errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(f"is in use by mt train (PID {os.getpid()})" in e for e in errors)
    assert sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*") if p.name != ".lock") == before
    assert main(["train", "--run", str(run), *TINY_OVERRIDES, "train.max_epochs=1"]) == 0  # free again


def test_the_next_write_removes_the_temporaries_of_writers_that_were_killed(tmp_path):
    """A process killed mid-write (SIGKILL, or the OOM killer) leaves `.NAME.tmp-PID` behind, a whole model file
    for `mt export`: the next write of NAME removes it once its process is gone, and leaves the temporaries of a
    process still running, of a writer that touched its file in the last minute, and of other files."""
    from mt.files import atomic_write

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(ended.stdout)
    target = tmp_path / "model.mt"
    stale, fresh = tmp_path / f".model.mt.tmp-{dead}", tmp_path / f".model.mt.tmp-{dead + 1_000_000}"
    alive, other = tmp_path / f".model.mt.tmp-{os.getppid()}", tmp_path / f".other.mt.tmp-{dead}"
    for path in (stale, fresh, alive, other):
        path.write_bytes(b"half a model")
    hour_ago = time.time() - 3600
    for path in (stale, alive, other):
        os.utime(path, (hour_ago, hour_ago))
    atomic_write(target, b"the model")
    assert target.read_bytes() == b"the model"
    assert not stale.exists() and fresh.exists() and alive.exists() and other.exists()
