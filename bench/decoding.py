"""Decoding speed: the RUN's trained model translating a split, for each beam size and precision, in rounds that
alternate the arms being compared (backends, or approximate and exact candidates) in the order A B, B A, ...:
sentences/s of each round and their median, with and without loading the model, BLEU, and how many lines each
arm translates exactly as the first arm does."""

from __future__ import annotations

import statistics
import time

import torch

from bench.memory import memory_record
from eval.scoring import score
from mt.decode.translator import Translator
from mt.run import RunDir

__all__ = ["Arm", "bench_decoding"]

WARMUP_SENTENCES = 500  # decoded untimed before the first timed decode of each arm: a full batch of short lines


class Arm:
    """What one arm decodes with: a backend and decode.* overrides (e.g. decode.candidates=exact)."""

    def __init__(self, label: str, backend: str | None = None, overrides: tuple[str, ...] = ()):
        self.label, self.backend, self.overrides = label, backend, list(overrides)

    def translator(self, run: RunDir, precision: str | None) -> Translator:
        translator = Translator.from_run(run, backend=self.backend)
        translator.set_decoding(self.overrides + ([f"decode.precision={precision}"] if precision else []))
        return translator


def _timed(run: RunDir, arm: Arm, precision: str | None, sources: list[str], beam: int):
    start = time.perf_counter()
    translator = arm.translator(run, precision)
    loaded = time.perf_counter()
    texts = translator.translate(sources, beam=beam)
    done = time.perf_counter()
    return translator, texts, done - loaded, done - start


def bench_decoding(run: RunDir, split: str, beams: list[int], precisions: list[str | None], arms: list[Arm],
                   rounds: int = 1) -> list[dict]:
    """One record per (beam, precision, arm); ``None`` precision: the run's decode.precision."""
    sources, references = run.split_texts(split)
    results = []
    for beam in beams:
        for precision in precisions:
            for arm in arms:  # a process's first decode of a kind runs slower (kernels, memory): untimed
                arm.translator(run, precision).translate_batch(sources[:WARMUP_SENTENCES], beam=beam)
            seconds: dict[str, list[float]] = {a.label: [] for a in arms}
            with_loading: dict[str, list[float]] = {a.label: [] for a in arms}
            first_round: dict[str, tuple[Translator, list[str]]] = {}
            for r in range(rounds):
                for arm in arms if r % 2 == 0 else arms[::-1]:
                    translator, texts, decode_s, total_s = _timed(run, arm, precision, sources, beam)
                    seconds[arm.label].append(decode_s)
                    with_loading[arm.label].append(total_s)
                    first_round.setdefault(arm.label, (translator, texts))
            for arm in arms:
                translator, texts = first_round[arm.label]
                results.append({
                    **_record(split, beam, translator, arm, texts, references, first_round[arms[0].label][1]),
                    "sentences": len(sources), "rounds": rounds,
                    "sentences_per_s": round(len(sources) / statistics.median(seconds[arm.label]), 1),
                    "sentences_per_s_rounds": [round(len(sources) / s, 1) for s in seconds[arm.label]],
                    "seconds_with_loading": round(statistics.median(with_loading[arm.label]), 2),
                    **memory_record()})
    return results


def _record(split: str, beam: int, translator: Translator, arm: Arm, texts: list[str], references: list[str],
            first_texts: list[str]) -> dict:
    return {"what": "decode", "split": split, "beam": beam, "arm": arm.label, "backend": translator.facts["backend"],
            "precision": translator.precision, "candidates": translator.cfg.decode.candidates,
            "bleu": score(texts, references)["bleu"],
            "identical_to_first_arm": round(sum(a == b for a, b in zip(texts, first_texts)) / len(texts), 4),
            "threads": torch.get_num_threads(), "batch_tokens": translator.cfg.decode.batch_tokens}
