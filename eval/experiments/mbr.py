"""Minimum Bayes risk reranking of the beam's n-best list (Kumar & Byrne 2004; Eikema & Aziz 2020), probed on a
split of a run against the beam's own best (docs/results.md, "The recipe"):

    python -m eval.experiments.mbr --run runs/multi30k-en-de --split val --nbest 5

Each sentence's n best hypotheses (beam n) are scored by their mean sentence-level chrF, or BLEU, against the
other n-1, and the highest is kept. Prints one JSON line: corpus BLEU and chrF of the beam's best and of both
reranked outputs, and the seconds each took. Validation split for choosing; not part of `mt eval`.
"""

from __future__ import annotations

import argparse
import json
import time

from sacrebleu.metrics import BLEU, CHRF

from eval.evaluate import split_texts
from mt.run import RunDir
from mt.translator import Translator


def mbr_pick(candidates: list[str], utility) -> str:
    """The candidate with the highest summed ``utility(hypothesis, pseudo_reference)`` against the others."""
    gains = [sum(utility(h, r) for j, r in enumerate(candidates) if j != i) for i, h in enumerate(candidates)]
    return candidates[max(range(len(candidates)), key=gains.__getitem__)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--nbest", type=int, default=5, help="beam size = candidates per sentence")
    p.add_argument("--checkpoint", default="final")
    args = p.parse_args(argv)
    run = RunDir.of(args.run)
    sources, refs = split_texts(run, args.split)
    started = time.perf_counter()
    results = Translator.from_run(run, checkpoint=args.checkpoint).translate(sources, beam=args.nbest,
                                                                               nbest=args.nbest)
    lists = [[text for _, text in r.nbest] for r in results]
    report = {"run": args.run, "split": args.split, "nbest": args.nbest,
              "decode_s": round(time.perf_counter() - started, 1)}
    bleu, sentence_bleu, chrf = BLEU(), BLEU(effective_order=True), CHRF()
    outputs = {"beam": [candidates[0] for candidates in lists]}
    for name, utility in (("mbr_chrf", lambda h, r: chrf.sentence_score(h, [r]).score),
                          ("mbr_bleu", lambda h, r: sentence_bleu.sentence_score(h, [r]).score)):
        started = time.perf_counter()
        outputs[name] = [mbr_pick(candidates, utility) for candidates in lists]
        report[f"{name}_s"] = round(time.perf_counter() - started, 1)
    for name, hyps in outputs.items():
        report[name] = {"bleu": round(bleu.corpus_score(hyps, [refs]).score, 2),
                        "chrf": round(chrf.corpus_score(hyps, [refs]).score, 2)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
