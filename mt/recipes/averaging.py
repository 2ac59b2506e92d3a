"""Checkpoint averaging: the weights of the last validations kept, and the model ``mt train`` hands on.

``KeepCheckpoints`` (``train.keep_checkpoints``) saves the weights of each validation as step-NNNNNNNN.pt and
keeps the newest N, for ``mt average`` and for the final choice.

``FinalModelChoice`` (``train.average_last``): at the end, best.pt or the average of the newest N kept
checkpoints, whichever scores higher on the validation split. Averaging the weights of the last checkpoints
smooths out the noise of the last updates (Junczys-Dowmunt et al. 2016; Vaswani et al. 2017) and often gains a
few tenths of BLEU, but not always (it lost on a 150-minute run: docs/results.md), so the two are compared by the
measure that picked best.pt, the task's validation score (the translator's: greedy validation BLEU, decoded in
decode.precision). The winner is written as ``checkpoints/final.pt`` with the comparison in it
(``state["final"]``); translate, eval and demo load it by default (``--checkpoint final``, best.pt when there is
none). A run that continues training drops its final.pt first, so a stale one is never used.
"""

from __future__ import annotations

from pathlib import Path

from mt.checkpoint import average_last, load_checkpoint, save_checkpoint
from mt.run import FINAL
from mt.train.hooks import Hook

__all__ = ["FinalModelChoice", "KeepCheckpoints", "choose_final_model", "describe"]


class KeepCheckpoints(Hook):
    def __init__(self, keep: int):
        self.keep = keep

    def after_validation(self, trainer) -> None:
        if not (self.keep and trainer.is_main):
            return
        folder = trainer.run.checkpoint_dir
        save_checkpoint(trainer.weights_state(), folder / f"step-{trainer.progress.step:08d}.pt")
        for old in sorted(folder.glob("step-*.pt"))[:-self.keep]:
            old.unlink()


class FinalModelChoice(Hook):
    def __init__(self, average: int):
        self.average = average

    def start(self, trainer) -> None:
        final = trainer.run.checkpoint_dir / FINAL
        if trainer.is_main and final.is_file():  # training goes on: chosen again at the end
            final.unlink()

    def end(self, trainer, result) -> None:
        folder = trainer.run.checkpoint_dir
        if trainer.is_main and self.average >= 2 and result.stopped != "interrupted" and (folder / "best.pt").is_file():
            print(describe(choose_final_model(folder, self.average, trainer.score)), flush=True)


def choose_final_model(folder: Path, average: int, score) -> dict:
    """Compare best.pt with the average of the newest ``average`` kept checkpoints by ``score(weights)`` (a
    ``Validation``, the higher the better) and save the better as folder/final.pt. Returns the comparison:
    {"chosen": "best" | "averaged", "val_bleu": {...}, "averaged": [checkpoint names]} ("val_bleu": the
    scores, under the name that the translator's score has)."""
    kept = sorted(folder.glob("step-*.pt"))
    candidates = {"best": load_checkpoint(folder / "best.pt")}
    averaged: list[str] = []
    if len(kept) >= 2:
        paths, out = average_last(folder, min(average, len(kept)))
        candidates["averaged"], averaged = load_checkpoint(out), [p.name for p in paths]
    scores = {name: score(state["model"]).score for name, state in candidates.items()}
    chosen = max(scores, key=lambda name: scores[name])  # a tie keeps best.pt (the first)
    comparison = {"chosen": chosen, "val_bleu": {k: round(v, 2) for k, v in scores.items()}, "averaged": averaged}
    state = {k: v for k, v in candidates[chosen].items() if k != "format"}
    save_checkpoint({**state, "final": comparison}, folder / FINAL)
    return comparison


def describe(comparison: dict) -> str:
    """One line for the user, e.g. "final model: the average of step-00001840.pt..step-00002160.pt (5), greedy
    validation BLEU 38.12 vs best.pt 37.76"."""
    bleu, names = comparison["val_bleu"], comparison["averaged"]
    labels = {"best": "best.pt"}
    if names:
        labels["averaged"] = f"the average of {names[0]}..{names[-1]} ({len(names)})"
    chosen = comparison["chosen"]
    others = [f"{labels[name]} {score:.2f}" for name, score in bleu.items() if name != chosen]
    return (f"final model: {labels[chosen]}, greedy validation BLEU {bleu[chosen]:.2f}"
            + (f" vs {', '.join(others)}" if others else "; no kept checkpoints to average"))
