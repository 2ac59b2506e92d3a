"""`mt eval`: translate a test split (or a pair of files) and score it; write RUN/eval/NAME.{hyp,json}."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from data_prep.sources import read_lines
from eval.scoring import score
from mt.errors import MTError
from mt.run import RunDir
from mt.translator import Translator

__all__ = ["evaluate", "read_text_file"]


def read_text_file(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise MTError(f"file not found: {path}")
    return read_lines(path)[0]


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
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".hyp", "".join(h + "\n" for h in hypotheses)), (".json", json.dumps(report, indent=2))):
        path = run.eval_dir / f"{name}{suffix}"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return report


def split_texts(run: RunDir, name: str) -> tuple[list[str], list[str]]:
    encoded = run.encoded()
    if name not in encoded:
        raise MTError(f"{run.root} has no split '{name}'; it has {', '.join(encoded)}")
    split = encoded[name]
    return split["src"], split["ref"] if "ref" in split.column_names else split["tgt"]
