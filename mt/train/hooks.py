"""The loop's hook interface: how a recipe plugs into training without the loop naming it.

A hook overrides what it needs; every method does nothing by default. Each method gets the
``mt.train.loop.Trainer`` (not imported here: the loop imports this module). The loop calls them on every rank, in
the order the task listed the hooks; ``trainer.is_main`` tells rank 0, which alone writes files. What a hook may
read of the trainer: ``progress`` (step, epoch, ...), ``elapsed()`` and ``budget`` (seconds; 0: none),
``session_steps`` and ``step_seconds`` (this session's updates and their training time), ``epoch_length``,
``task``, ``cfg``, ``run``, ``device``, ``main``; what it may call: ``log_record(kind, fields)``, ``weights_state()``,
``score(weights)``. See ``mt.recipes`` for the hooks of the recipe.
"""

from __future__ import annotations

from typing import Any

from mt.train.progress import TrainResult

__all__ = ["Hook"]


class Hook:
    name = ""  # the key of its state in checkpoints ("hooks": {name: state}); "" keeps none

    def load(self, checkpoint: dict[str, Any]) -> None:
        """A resumed run: the checkpoint it resumes from (its own state is ``checkpoint["hooks"][name]``)."""

    def state(self) -> dict[str, Any] | None:
        """What a checkpoint keeps of this hook (None: nothing)."""
        return None

    def start(self, trainer) -> None:
        """Before the first update of this session (after a resume)."""

    def after_step(self, trainer) -> None:
        """After every update (``trainer.progress.step`` counts it)."""

    def after_validation(self, trainer) -> None:
        """After each validation, its log record and last.pt / best.pt."""

    def record(self, trainer, record: dict[str, Any]) -> None:
        """After each record written to RUN/train_log.jsonl (rank 0 only): ``kind``, ``step``, ... and its fields."""

    def end(self, trainer, result: TrainResult) -> None:
        """After training stopped, for whatever reason (``result.stopped``)."""
