"""``train.log_to: tensorboard``: the training log's numbers as TensorBoard scalars, in RUN/tensorboard.

    tensorboard --logdir runs/multi30k-en-de/tensorboard

A hook (``mt.train.hooks``): every record the loop writes to RUN/train_log.jsonl becomes scalars at its update
step: ``train/loss``, ``train/lr``, ``train/tokens_per_s``; ``valid/loss``, ``valid/ppl``, ``valid/bleu``;
``rdrop/on`` (1 or 0) and ``rdrop/updates_in_budget`` when the R-Drop guard decides. TensorBoard itself is an
optional dependency (``pip install "mt-lstm[tensorboard]"``).
"""

from __future__ import annotations

from typing import Any

from mt.errors import MTError
from mt.train.hooks import Hook

__all__ = ["TensorBoardLog", "log_hooks"]

SCALARS = {  # record kind -> {field: scalar name}
    "train": {"loss": "train/loss", "lr": "train/lr", "tokens_per_s": "train/tokens_per_s"},
    "valid": {"val_loss": "valid/loss", "val_ppl": "valid/ppl", "val_bleu": "valid/bleu"},
    "rdrop": {"on": "rdrop/on", "updates_in_budget": "rdrop/updates_in_budget"},
}


class TensorBoardLog(Hook):
    def __init__(self):
        self.writer = None

    def start(self, trainer) -> None:
        if not trainer.is_main or self.writer is not None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MTError('train.log_to=tensorboard needs TensorBoard: pip install "mt-lstm[tensorboard]"') from None
        self.writer = SummaryWriter(str(trainer.run.root / "tensorboard"))

    def record(self, trainer, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for field, name in SCALARS.get(record["kind"], {}).items():
            if isinstance(record.get(field), (int, float)):  # a bool (rdrop "on") counts 1 or 0
                self.writer.add_scalar(name, float(record[field]), record["step"])
        self.writer.flush()

    def end(self, trainer, result) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def log_hooks(train_cfg) -> list[Hook]:
    """The hooks ``train.log_to`` asks for (none by default)."""
    return [TensorBoardLog()] if train_cfg.log_to == "tensorboard" else []
