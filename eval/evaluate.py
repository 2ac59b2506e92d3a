"""`mt eval`: translate a test split (or a pair of files) and score it; write RUN/eval/NAME.{hyp,json}."""

from __future__ import annotations

import json
import time

from eval.scoring import score
from mt.errors import MTError
from mt.files import atomic_write
from mt.run import RunDir
from mt.translator import Translator

__all__ = ["evaluate", "split_texts"]


def evaluate(translator: Translator, run: RunDir, name: str, sources: list[str], references: list[str],
             beam: int | None = None, alpha: float | None = None) -> dict:
    if len(sources) != len(references):
        raise MTError(f"{name}: {len(sources)} source lines but {len(references)} reference lines")
    beam = beam or translator.cfg.decode.beam
    alpha = translator.cfg.decode.alpha if alpha is None else alpha
    start = time.perf_counter()
    hypotheses = [t.text for t in translator.translate(sources, beam=beam, alpha=alpha)]
    seconds = time.perf_counter() - start
    facts = getattr(translator, "facts", {})
    report = {**score(hypotheses, references), "beam": beam, "alpha": alpha,
              "checkpoint": facts.get("checkpoint"), "ensemble": facts.get("ensemble", []),
              "sentences": len(sources), "seconds": round(seconds, 2),
              "sentences_per_s": round(len(sources) / max(seconds, 1e-9), 1)}
    atomic_write(run.eval_dir / f"{name}.hyp", "".join(h + "\n" for h in hypotheses))
    atomic_write(run.eval_dir / f"{name}.json", json.dumps(report, indent=2))
    return report


def split_texts(run: RunDir, name: str) -> tuple[list[str], list[str]]:
    encoded = run.encoded()
    if name not in encoded:
        raise MTError(f"{run.root} has no split '{name}'; it has {', '.join(encoded)}")
    split = encoded[name]
    return split["src"], split["ref"] if "ref" in split.column_names else split["tgt"]
