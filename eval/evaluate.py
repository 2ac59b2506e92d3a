"""`mt eval`: translate a test split (or a pair of files) and score it; write RUN/eval/NAME.{hyp,json}."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from eval.scoring import score
from mt.decode.translator import Translator
from mt.errors import MTError
from mt.files import atomic_write
from mt.run import RunDir
from mt.text import read_text_file

__all__ = ["check_pair", "evaluate", "evaluation_jobs", "result_name"]


def evaluate(translator: Translator, run: RunDir, name: str, sources: list[str], references: list[str],
             beam: int | None = None, alpha: float | None = None, tokenize: str | None = None) -> dict:
    """Translate ``sources``, score against ``references`` (BLEU's tokenizer: ``tokenize``, else the one for the
    target language) and write RUN/eval/NAME.{hyp,json}; -> the report (with the hypotheses under "hypotheses"
    for the caller, not in the file)."""
    if len(sources) != len(references):
        raise MTError(f"{name}: {len(sources)} source lines but {len(references)} reference lines")
    beam = beam or translator.cfg.decode.beam
    alpha = translator.cfg.decode.alpha if alpha is None else alpha
    start = time.perf_counter()
    hypotheses = [t.text for t in translator.translate_batch(sources, beam=beam, alpha=alpha)]
    seconds = time.perf_counter() - start
    facts = getattr(translator, "facts", {})
    report = {**score(hypotheses, references, facts.get("tgt", ""), tokenize), "beam": beam, "alpha": alpha,
              "precision": getattr(translator, "precision", "fp32"), "backend": facts.get("backend"),
              "checkpoint": facts.get("checkpoint"), "final": facts.get("final"), "ensemble": facts.get("ensemble", []),
              "sentences": len(sources), "seconds": round(seconds, 2),
              "sentences_per_s": round(len(sources) / max(seconds, 1e-9), 1)}
    atomic_write(run.eval_dir / f"{name}.hyp", "".join(h + "\n" for h in hypotheses))
    atomic_write(run.eval_dir / f"{name}.json", json.dumps(report, indent=2))
    return {**report, "hypotheses": hypotheses}


def check_pair(first: str, a: list[str], second: str, b: list[str]) -> None:
    """Two files scored line against line: neither empty, the same number of lines (one-line errors naming them)."""
    for path, lines in ((first, a), (second, b)):
        if not lines:
            raise MTError(f"{path} is empty: nothing to score")
    if len(a) != len(b):
        raise MTError(f"{first} has {len(a):,} lines but {second} has {len(b):,}: they must match line for line")


def evaluation_jobs(run: RunDir, split: str | None = None, src: str | None = None,
                    ref: str | None = None) -> list[tuple[str, list[str], list[str]]]:
    """(name, sources, references) to score: a pair of files (named after the source file), one split, or every
    test split of RUN (all but train and val)."""
    if src or ref:
        if not (src and ref):
            raise MTError("give both --src FILE and --ref FILE")
        sources, references = read_text_file(src), read_text_file(ref)
        check_pair(src, sources, ref, references)
        return [(Path(src).name.split(".")[0], sources, references)]
    names = [split] if split else [n for n in run.meta()["splits"] if n not in ("train", "val")]
    if not names:
        raise MTError(f"{run.root} has no test split; use --split val or --src/--ref")
    return [(name, *run.split_texts(name)) for name in names]


def result_name(name: str, checkpoint: str = "final", ensemble: int = 0, quantize: str | None = None,
                tag: str | None = None, overrides: list[str] = ()) -> str:
    """RUN/eval file stem of a result: results of other checkpoints, ensembles (``ensemble`` extra members),
    quantisation or decode overrides get their own names (``NAME.averaged``, ``NAME.ensemble2``, ``NAME.int8``,
    ``NAME.beam-8``), never overwriting the run's own ``NAME``; ``tag`` chooses the suffix."""
    tag = tag or "-".join(part for part in (checkpoint if checkpoint != "final" else "",
                                            f"ensemble{ensemble + 1}" if ensemble else "",
                                            quantize or "", *(o.removeprefix("decode.") for o in overrides)) if part)
    return f"{name}.{re.sub(r'[^A-Za-z0-9_-]+', '-', tag)}" if tag else name
