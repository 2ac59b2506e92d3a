"""Training curves: loss and validation BLEU (or perplexity, for language models) against steps and minutes,
from RUN/train_log.jsonl."""

from __future__ import annotations

from pathlib import Path

from mt.files import atomic_write, read_jsonl

__all__ = ["plot_curves", "save_figure"]


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
    save_figure(fig, out)


def save_figure(fig, out: Path) -> None:
    """Write a matplotlib figure to ``out`` atomically (a reader never sees half a PNG) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=90), what="figure")
    finally:
        plt.close(fig)
