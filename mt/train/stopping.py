"""When training stops: Ctrl-C or SIGTERM, the limits of ``train.*``, and the ranks' agreement under DDP."""

from __future__ import annotations

import signal
from pathlib import Path

import torch
import torch.distributed as dist

from mt.config import TrainConfig
from mt.errors import MTError
from mt.train.progress import Progress

__all__ = ["StopFlag", "any_rank", "out_of_time", "rank0_decides", "rank_values", "same_resumed_step",
           "same_weights", "stop_reason"]


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


def out_of_time(progress: Progress, elapsed: float, budget: float) -> bool:
    """Within an epoch: stop training now so that the final validation still fits in the budget."""
    return bool(budget) and elapsed + progress.val_seconds >= budget


def stop_reason(progress: Progress, limits: TrainConfig, elapsed: float, budget: float) -> str | None:
    """Why training stops after a validation, or None. With a time budget, what is left must hold the final
    validation and at least as much training before it: otherwise the last minutes would buy validations a step
    or two apart, each of which also counts as a plateau and halves the learning rate a resumed run inherits."""
    if progress.epoch >= limits.max_epochs:
        return "max_epochs"
    if progress.bad_validations >= limits.patience:
        return "early_stopping"
    if budget and elapsed + 2 * progress.val_seconds >= budget:
        return "max_minutes"
    return None


def any_rank(device: torch.device, *flags: bool) -> tuple[bool, ...]:
    """Each flag, true on every rank when it is true on any. Under DDP the ranks must leave the step loop at the
    same step and for the same reason (a Ctrl-C or the time budget, each seen by its own clock): a rank that
    trained on alone would wait forever in the next gradient all-reduce."""
    if not dist.is_initialized():
        return flags
    votes = torch.tensor([float(f) for f in flags], device=device)  # (len(flags),)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in votes.tolist())


def rank_values(device: torch.device, value: float) -> list[float]:
    """``value`` of every rank, in rank order (``[value]`` when not distributed): to check that they agree."""
    if not dist.is_initialized():
        return [value]
    values = [torch.zeros(1, dtype=torch.float64, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(values, torch.tensor([value], dtype=torch.float64, device=device))
    return [v.item() for v in values]


def same_resumed_step(device: torch.device, step: int, root: Path) -> None:
    """Every rank resumed ``root`` at the same step, or an error that says why: e.g. two machines that do not
    share RUN, where rank 0 alone writes checkpoints and another machine's copy never sees them."""
    steps = rank_values(device, step)
    if len(set(steps)) > 1:
        raise MTError(f"the processes resumed at different steps ({', '.join(f'{s:.0f}' for s in steps)} by rank): "
                      f"every machine must see the same {root} (a shared filesystem)")


def same_weights(device: torch.device, model: torch.nn.Module) -> float:
    """The weights' checksum, the same on every rank (DDP keeps the replicas identical), or an error."""
    checksum = sum(float(w.double().sum()) for w in model.state_dict().values())
    if len(set(rank_values(device, checksum))) > 1:
        raise MTError("the processes ended with different weights: please report this as a bug")
    return checksum


def rank0_decides(value):
    """Rank 0's value on every rank (the value itself when not distributed)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
