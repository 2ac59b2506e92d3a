"""Killing training at a random point loses at most the work since the last checkpoint; re-running resumes."""

from __future__ import annotations

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
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_training_resumes_from_its_checkpoint(tmp_path, sig, train_tiny, capsys):
    run = train_tiny(1)  # a prepared run with one finished epoch
    last = run / "checkpoints" / "last.pt"
    before = load_checkpoint(last)["progress"]["step"]
    proc = start_training(run, epochs=40)
    wait_for_new_checkpoint(last, last.stat().st_mtime_ns)  # training is under way
    time.sleep(random.random())  # then a random point
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    if sig in (signal.SIGTERM, signal.SIGINT):  # Ctrl-C and SIGTERM: checkpoint saved, then exit 130
        assert proc.returncode == 130 and "stopped (interrupted)" in out
    else:
        assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(last)  # intact, loadable
    killed_at = state["progress"]["step"]
    assert killed_at > before
    capsys.readouterr()
    assert main(["train", "--run", str(run), *TINY_OVERRIDES, "train.max_epochs=2"]) == 0  # resumed, in-process
    assert not list((run / "checkpoints").glob(".*tmp*"))  # a write cut short by the kill is cleaned up
    match = re.search(r"resuming from last.pt: step (\d+)", capsys.readouterr().out)
    assert match and int(match.group(1)) == killed_at
    assert load_checkpoint(last)["progress"]["step"] >= killed_at
