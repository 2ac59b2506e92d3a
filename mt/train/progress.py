"""What a run has done so far (saved in every checkpoint, so a resumed run continues it) and how it ended."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Progress", "TrainResult"]


@dataclass
class Progress:
    """Everything besides tensors that a resumed run must continue: saved in each checkpoint."""
    step: int = 0
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the current epoch already trained
    best_score: float = -math.inf  # the task's validation score (higher is better)
    best_val_loss: float = math.inf  # the validation loss of the last validation that made progress
    bad_validations: int = 0  # in a row, without progress in the score or the loss (early stopping)
    validated_step: int = 0  # the step of the last validation
    train_seconds: float = 0.0
    val_seconds: float = 0.0  # the last validation's duration: a time budget keeps room for the next one

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Progress:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})


@dataclass
class TrainResult:
    step: int
    epoch: int
    best_score: float
    stopped: str  # why training ended: max_epochs, early_stopping, max_minutes, interrupted
    tokens_per_second: float
    minutes: float
