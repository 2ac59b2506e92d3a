"""Pieces shared by the translator's trainer and the language-model pre-trainer: one optimiser step, the
Ctrl-C/SIGTERM stop flag and the JSONL training log."""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Callable
from pathlib import Path

import torch

from mt.errors import MTError
from mt.profiling import CLIP, OPTIMIZER, span
from mt.schedule import LRSchedule

__all__ = ["StopFlag", "append_log", "make_optimizer", "train_step"]


def make_optimizer(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (AdamW with weight decay) with the fused kernel: one pass over each parameter instead of about ten
    elementwise passes (about 35 ms less per step for the 13M-parameter default model on 2 CPU cores)."""
    cls = torch.optim.AdamW if weight_decay else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=weight_decay, fused=True)


def train_step(forward: Callable[[], torch.Tensor], n_tokens: int, optimizer: torch.optim.Optimizer,
               schedule: LRSchedule, step: int, clip: float, autocast) -> float:
    """One update: ``forward()`` returns the summed loss of a batch of ``n_tokens`` target tokens; the mean
    is back-propagated, gradients are clipped to norm ``clip`` (0: no clipping). Returns the mean loss."""
    lr = schedule.lr(step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast:
        loss_sum = forward()
    loss = loss_sum / n_tokens
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        with span(CLIP):
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip)
    with span(OPTIMIZER):
        optimizer.step()
    value = loss.item()
    if not math.isfinite(value):
        raise MTError(f"training diverged at step {step} (loss {value}); lower train.lr or raise train.clip")
    return value


class StopFlag:
    """Ctrl-C / SIGTERM ask for a clean stop after the current step (a second Ctrl-C aborts at once)."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def append_log(path: Path, record: dict) -> None:
    """Append one JSON record to a training log (one line each)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        raise MTError(f"cannot write the training log {path}: {e.strerror or e}") from None
