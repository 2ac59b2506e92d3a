"""R-Drop's budget guard (``train.rdrop_min_updates``): R-Drop only where the time budget can pay for it.

R-Drop (Liang et al. 2021; ``train.rdrop_alpha``, ``mt.model.loss``) passes every batch twice, so an update costs
about twice as much. It wins when the run has updates to spare: on Multi30k en→de it won with the 3,000-3,200
updates a 60-minute budget held (beam 5 validation 41.53 / 41.49 against 40.73-41.20 without it), was level
with about 2,500-2,650 and lost with about 2,100 (docs/recipe.md). A run whose budget holds fewer updates at
R-Drop's pace (a slower machine, or a larger corpus whose model is still far from converged when the budget
ends) learns more from twice the plain updates.

So the guard measures R-Drop's pace early, over updates 11 to 60 of a session (training time only; the first
updates pay start-up costs), projects the updates the rest of the budget holds at that pace, and keeps R-Drop
on only if they reach ``train.rdrop_min_updates``. Without a time budget, or with the minimum at 0, R-Drop
stays on. The choice is final: saved in checkpoints, logged (a ``"rdrop"`` record in train_log.jsonl) and
printed, and under ``torchrun`` rank 0's choice holds on every rank.
"""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from mt.train.hooks import Hook
from mt.train.stopping import rank0_decides

__all__ = ["PROBE", "RDropGuard", "updates_in_budget"]

PROBE = (10, 60)  # session updates between which the pace is measured


def updates_in_budget(step: int, elapsed: float, budget: float, seconds_per_update: float) -> float:
    """The updates a run will have made when ``budget`` seconds are spent: ``step`` now, after ``elapsed``
    seconds, and the rest at ``seconds_per_update``."""
    return step + max(budget - elapsed, 0.0) / max(seconds_per_update, 1e-9)


class RDropGuard(Hook):
    name = "rdrop"

    def __init__(self, loss, min_updates: int):
        """``loss``: the task's ``SummedLoss``, whose ``rdrop`` weight the guard sets (its weight at the start is
        R-Drop's alpha; 0: no R-Drop, nothing to guard)."""
        self.loss, self.alpha, self.min_updates = loss, loss.rdrop, min_updates
        self.decided, self.on = False, True
        self._mark: float | None = None  # training seconds at the probe's start

    def load(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("hooks", {}).get(self.name)
        if saved:
            self.decided, self.on = bool(saved["decided"]), bool(saved["on"])

    def state(self) -> dict[str, Any]:
        return {"decided": self.decided, "on": self.on}

    def start(self, trainer) -> None:
        self.loss.rdrop = self.alpha if self.on else 0.0
        self._mark = None

    def after_step(self, trainer) -> None:
        if self.decided or not (self.alpha and self.min_updates and trainer.budget):
            return
        if trainer.session_steps == PROBE[0]:
            self._mark = trainer.step_seconds
        if trainer.session_steps < PROBE[1] or self._mark is None:
            return
        pace = (trainer.step_seconds - self._mark) / (PROBE[1] - PROBE[0])  # seconds per update
        expected = rank0_decides(updates_in_budget(trainer.progress.step, trainer.elapsed(), trainer.budget, pace))
        self.decided, self.on = True, expected >= self.min_updates
        self.loss.rdrop = self.alpha if self.on else 0.0  # the next forward pass follows it, on every rank
        epochs = expected / trainer.epoch_length  # every rank makes each update: an epoch is its share
        if trainer.is_main:
            tqdm.write(f"R-Drop {'stays on' if self.on else 'off from here on'}: at its pace "
                       f"({pace:.2f} s an update) the {trainer.budget / 60:g}-minute budget holds about "
                       f"{expected:,.0f} updates ({epochs:.1f} epochs), {'at least' if self.on else 'fewer than'} "
                       f"train.rdrop_min_updates={self.min_updates}")
        trainer.log_record("rdrop", {"seconds_per_update": pace, "updates_in_budget": expected, "on": self.on})
