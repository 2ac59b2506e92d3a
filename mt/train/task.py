"""What a training task hands the loop (``mt.train.loop.Trainer``): the translator's task is
``mt.tasks.translation.TranslationTask``, the language model's ``mt.tasks.language_model.LanguageModelTask``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from torch import nn

__all__ = ["TrainingTask", "Validation"]


@dataclass
class Validation:
    """What a task adds to the validation loss, which the loop computes for every task."""
    score: float  # higher is better: decides best.pt and early stopping (and the plateau with plateau_metric=bleu)
    record: dict[str, float] = field(default_factory=dict)  # the task's own fields of the "valid" log record
    summary: str = ""  # for the console after "val loss .. ppl ..", e.g. "BLEU 3.13"
    example: str = ""  # e.g. the first translation, shown after the summary


class TrainingTask(Protocol):
    """What differs between training a translator and a language model."""
    model: nn.Module  # the weights that checkpoints hold
    loss: nn.Module  # loss(*batch.model_inputs, targets=batch.targets) -> the batch's summed loss
    val_batches: list  # the validation split's batches (CPU), for the validation loss

    def describe(self) -> str: ...  # the first line of a fresh run, e.g. "training 13,182,464 parameters on cpu"
    def epoch_batches(self, seed: int) -> list[list[int]]: ...  # the epoch's batches as index lists, shuffled by seed
    def batch(self, indices: list[int]): ...  # -> a CPU batch with model_inputs, targets, n_tokens and to(device)
    def validate(self, loss: float) -> Validation: ...  # given the validation loss per token
    def describe_best(self, score: float) -> str: ...  # e.g. "best validation BLEU 37.76"
    def checkpoint_extras(self) -> dict[str, Any]: ...  # what a checkpoint needs besides the loop's own state
    def check_checkpoint(self, state: dict[str, Any], path: Path) -> None: ...  # MTError if it cannot resume
