"""One update: the optimizer, the forward and backward pass of a batch, clipping, and seeding."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch

from mt.errors import MTError
from mt.profiling import CLIP, OPTIMIZER, span
from mt.train.schedule import LRSchedule

__all__ = ["make_optimizer", "seed_everything", "train_step"]


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)


def make_optimizer(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (AdamW with weight decay) with the fused kernel: one pass over each parameter instead of about ten
    elementwise passes."""
    cls = torch.optim.AdamW if weight_decay else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=weight_decay, fused=True)


def train_step(forward: Callable[[], torch.Tensor], n_tokens: int, optimizer: torch.optim.Optimizer,
               schedule: LRSchedule, step: int, clip: float, precision) -> float:
    """One update: ``forward()`` returns the summed loss of a batch of ``n_tokens`` target tokens; the mean
    is back-propagated, gradients are clipped to norm ``clip`` (0: no clipping). ``precision`` is the autocast
    context (``mt.device.autocast``). Returns the mean loss."""
    lr = schedule.lr(step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    with precision:
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
