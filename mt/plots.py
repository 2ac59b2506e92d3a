"""Training curves: loss and validation BLEU (or perplexity, for language models) against steps and minutes,
from RUN/train_log.jsonl."""

from __future__ import annotations

import time
from pathlib import Path

from mt.files import atomic_write, read_jsonl

__all__ = ["LiveCurves", "plot_curves", "save_figure"]

CURVES_EVERY_SECONDS = 60.0


class LiveCurves:
    """A training run's plots/curves.png: redrawn after a validation when a minute has passed since the last
    drawing, and at the end of the session (``flush``). A drawing takes a noticeable fraction of a second, which a
    run that validates every few seconds (a small corpus, the test suite) would otherwise spend at every one."""

    def __init__(self, log_path: Path, out: Path, every_seconds: float = CURVES_EVERY_SECONDS):
        self.log_path, self.out, self.every_seconds = log_path, out, every_seconds
        self._drawn, self._pending = time.perf_counter(), False

    def validated(self) -> None:
        self._pending = True
        if time.perf_counter() - self._drawn >= self.every_seconds:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            plot_curves(self.log_path, self.out)
            self._drawn, self._pending = time.perf_counter(), False


def plot_curves(log_path: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_jsonl(log_path)
    train, valid = [r for r in records if r["kind"] == "train"], [r for r in records if r["kind"] == "valid"]
    # translators are judged by validation BLEU, language models (mt pretrain) by validation perplexity
    metric, label = ("val_bleu", "validation BLEU (greedy)") if any("val_bleu" in r for r in valid) \
        else ("val_ppl", "validation perplexity")
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for col, x in enumerate(("step", "minutes")):
        ax = axes[0][col]
        ax.plot([r[x] for r in train], [r["loss"] for r in train], label="train loss (smoothed CE)", lw=1)
        ax.plot([r[x] for r in valid], [r["val_loss"] for r in valid], "o-", label="validation loss")
        ax.set_xlabel(x)
        ax.set_ylabel("loss per token")
        ax.legend()
        ax.grid(alpha=0.3)
        ax = axes[1][col]
        ax.plot([r[x] for r in valid], [r[metric] for r in valid], "o-", color="tab:green")
        ax.set_xlabel(x)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    # fixed margins: matplotlib's tight_layout would cost a third of the drawing, at every validation
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.075, top=0.975, hspace=0.25, wspace=0.2)
    save_figure(fig, out, tight=False)


def save_figure(fig, out: Path, tight: bool = True) -> None:
    """Write a matplotlib figure to ``out`` atomically (a reader never sees half a PNG) and close it."""
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    try:
        atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=90), what="figure")
    finally:
        plt.close(fig)
