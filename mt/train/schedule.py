"""Learning-rate schedule: linear warm-up, then constant, inverse square root, or decay on a validation plateau
(of the loss or of BLEU, ``train.plateau_metric``).

The state is plain numbers (``state_dict``), so it lives in checkpoints and resumes exactly."""

from __future__ import annotations

from mt.config import TrainConfig

__all__ = ["LRSchedule", "improves"]


def improves(value: float, best: float, threshold: float) -> bool:
    """Progress (higher is better): ``value`` beats ``best`` by ``threshold`` of its size; anything beats -inf."""
    return best == float("-inf") or value > best + threshold * abs(best)


class LRSchedule:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.scale = 1.0  # plateau decays multiply this
        self.best = float("-inf")
        self.bad = 0

    def lr(self, step: int) -> float:
        """Learning rate for update number ``step`` (1-based)."""
        c = self.cfg
        warm = c.warmup_steps
        factor = min(1.0, step / warm) if warm else 1.0
        if c.schedule == "inverse_sqrt" and step > max(warm, 1):
            factor = (max(warm, 1) / step) ** 0.5
        if c.schedule == "plateau":
            return max(c.lr * factor * self.scale, c.min_lr if step > warm else 0.0)
        return c.lr * factor

    def observe(self, metric: float, step: int = 0) -> bool:
        """Report the watched validation metric after update ``step`` (higher is better: the trainer passes minus
        the loss); returns True when the rate was just decayed. Progress means beating the best so far by
        ``plateau_threshold`` of its size; a validation within the warm-up never counts as a plateau."""
        c = self.cfg
        if improves(metric, self.best, c.plateau_threshold):
            self.best, self.bad = metric, 0
            return False
        if step < c.warmup_steps:  # still warming up: the rate has not reached train.lr yet
            return False
        self.bad += 1
        if self.cfg.schedule == "plateau" and self.bad >= self.cfg.lr_patience and \
                self.cfg.lr * self.scale > self.cfg.min_lr:
            self.scale *= self.cfg.lr_decay
            self.bad = 0
            return True
        return False

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.best, self.bad = float(state["scale"]), float(state["best"]), int(state["bad"])
