"""The model ``mt train`` hands on: best.pt, or the average of the newest ``train.average_last`` kept
checkpoints (one per validation) when that average scores higher on the validation split. Averaging the weights
of the last checkpoints smooths out the noise of the last updates (Junczys-Dowmunt et al. 2016; Vaswani et al.
2017) and often gains a few tenths of BLEU, but not always (it lost on the 150-minute run in docs/results.md), so the
two are compared by the measure that picked best.pt, greedy validation BLEU (decoded in decode.precision). With
``train.ema_decay`` the best validation of the moving average of the weights (``best-ema.pt``, ``mt.ema``) is a
third candidate.

The winner is written as ``checkpoints/final.pt`` with the comparison in it (``state["final"]``); translate,
eval and demo load it by default (``--checkpoint final``, best.pt when there is none). A run that continues
training drops its final.pt first, so a stale one is never used.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mt.checkpoint import average_last, load_checkpoint, save_checkpoint
from mt.config import Config
from mt.validate import validation_bleu

__all__ = ["FINAL", "choose_final_model", "describe"]

FINAL = "final.pt"


def choose_final_model(folder: Path, cfg: Config, model: torch.nn.Module, task, device: torch.device) -> dict:
    """Compare best.pt with the average of the newest kept checkpoints on ``task``'s validation sentences and
    save the better as folder/final.pt (with train.ema_decay, best-ema.pt competes too). ``model`` is
    overwritten with each candidate's weights. Returns the comparison: {"chosen": "best" | "averaged" | "ema",
    "val_bleu": {...}, "averaged": [checkpoint names]}."""
    kept = sorted(folder.glob("step-*.pt"))
    candidates = {"best": load_checkpoint(folder / "best.pt")}
    averaged: list[str] = []
    if cfg.train.average_last >= 2 and len(kept) >= 2:
        paths, out = average_last(folder, min(cfg.train.average_last, len(kept)))
        candidates["averaged"], averaged = load_checkpoint(out), [p.name for p in paths]
    if cfg.train.ema_decay and (folder / "best-ema.pt").is_file():
        candidates["ema"] = load_checkpoint(folder / "best-ema.pt")
    scores = {}
    for name, state in candidates.items():
        model.load_state_dict(state["model"])
        scores[name], _ = validation_bleu(model, task.val_src, task.val_refs, task.tokenizer.decode_tgt, cfg.decode,
                                          device)
    chosen = max(scores, key=lambda name: scores[name])  # a tie keeps best.pt (the first)
    comparison = {"chosen": chosen, "val_bleu": {k: round(v, 2) for k, v in scores.items()}, "averaged": averaged}
    state = {k: v for k, v in candidates[chosen].items() if k != "format"}
    save_checkpoint({**state, "final": comparison}, folder / FINAL)
    return comparison


def describe(comparison: dict) -> str:
    """One line for the user, e.g. "final model: the average of step-00001840.pt..step-00002160.pt (5), greedy
    validation BLEU 38.12 vs best.pt 37.76"."""
    bleu, names = comparison["val_bleu"], comparison["averaged"]
    labels = {"best": "best.pt", "ema": "best-ema.pt (the moving average of the weights)"}
    if names:
        labels["averaged"] = f"the average of {names[0]}..{names[-1]} ({len(names)})"
    chosen = comparison["chosen"]
    others = [f"{labels[name]} {score:.2f}" for name, score in bleu.items() if name != chosen]
    return (f"final model: {labels[chosen]}, greedy validation BLEU {bleu[chosen]:.2f}"
            + (f" vs {', '.join(others)}" if others else "; no kept checkpoints to average"))
