"""How a model copes with messy input (``bench.messy_set``), with the text pipeline on and off.

    python -m bench.messy --run runs/multi30k-en-de --split val [--beam 5] [--out messy.json]

Builds the messy set of ``--split`` (seed 1), translates it and the clean split with ``mt.decode.pipeline`` on
(the defaults, and ``decode.markup=html`` for the lines with tags, as a user would say ``--markup html``) and off
(``decode.split_sentences=false decode.protect_spans=false decode.recase=false``, markup none), and prints per
arm:

- spans (name, number, code, url, email): the share reproduced exactly, and in place (its relative position in the
  translation within 0.25 of its relative position in the reference; a span appended to the end of a line whose
  source had it at the start does not count), with the spans placed without attention (fallbacks) apart;
- tags: the share of lines whose output holds the source's tags, in order, well-formed;
- BLEU of each kind against the BLEU of the clean lines it was made from, and of the whole messy set against the
  whole clean set (the clean lines translated one by one, joined as the messy line joined them);
- unpunctuated lines: output words over the words of the same sentences translated one by one, and BLEU against
  that one-by-one translation;
- with ``--glossary FILE``: the clean lines holding its terms, with and without it: the share of target terms in
  the translations, and BLEU.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from sacrebleu.metrics import BLEU

from bench.messy_set import SPANS, build
from mt.decode.protect import load_glossary
from mt.decode.translator import Translator
from mt.device import bf16_units
from mt.run import RunDir

OFF = ["decode.split_sentences=false", "decode.protect_spans=false", "decode.recase=false"]
_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")


def bleu(hyps: list[str], refs: list[str]) -> float:
    return round(BLEU().corpus_score(hyps, [refs]).score, 2) if hyps else float("nan")


def in_place(span: str, hyp: str, ref: str) -> bool:
    """``span`` in ``hyp`` at about the relative position it has in ``ref``."""
    at = hyp.find(span)
    if at < 0:
        return False
    return abs(at / max(1, len(hyp)) - ref.find(span) / max(1, len(ref))) <= 0.25


def tags_kept(source: str, hyp: str) -> bool:
    """The source's tags, in order, in ``hyp``, and every opened tag closed in order."""
    want, got = _TAG.findall(source), _TAG.findall(hyp)
    if [t.split()[0].rstrip(">") for t in want] != [t.split()[0].rstrip(">") for t in got]:
        return False
    stack: list[str] = []
    for t in got:
        name = t.strip("</>").split()[0]
        if t.startswith("</"):
            if not stack or stack.pop() != name:
                return False
        else:
            stack.append(name)
    return not stack


def evaluate(translator: Translator, items: list[dict], clean_src: list[str], clean_ref: list[str],
             markup: str = "none") -> dict:
    """The report of one arm; ``markup``: the ``decode.markup`` the tag lines are translated with."""
    started = time.perf_counter()
    results = translator.translate_batch([x["source"] for x in items])
    if markup != "none":
        tagged = [i for i, x in enumerate(items) if x["kind"] == "tag"]
        translator.set_decoding([f"decode.markup={markup}"])
        for i, r in zip(tagged, translator.translate_batch([items[i]["source"] for i in tagged])):
            results[i] = r
        translator.set_decoding(["decode.markup=none"])
    hyps = [r.text for r in results]
    clean = translator.translate(clean_src)
    seconds = time.perf_counter() - started
    report: dict = {"seconds": round(seconds, 1), "bleu_clean_split": bleu(clean, clean_ref)}
    messy_hyps, messy_refs, clean_hyps, clean_refs = [], [], [], []
    for kind in sorted({x["kind"] for x in items}, key=lambda k: list(SPANS).index(k) if k in SPANS else 99):
        mine = [(x, h, r) for x, h, r in zip(items, hyps, results) if x["kind"] == kind]
        row: dict = {"lines": len(mine)}
        ch = [" ".join(clean[i] for i in x["lines"]) for x, _, _ in mine]
        cr = [" ".join(clean_ref[i] for i in x["lines"]) for x, _, _ in mine]
        refs = [x["reference"] for x, _, _ in mine]
        mh = [h for _, h, _ in mine]
        if kind in SPANS:
            spans = [(s, h, x["reference"]) for x, h, _ in mine for s in x["spans"]]
            row["exact"] = round(sum(s in h for s, h, _ in spans) / len(spans), 3)
            row["in_place"] = round(sum(in_place(s, h, r) for s, h, r in spans) / len(spans), 3)
            row["fallbacks"] = sum(r.fallbacks for _, _, r in mine)
        if kind == "tag":
            row["tags_kept"] = round(sum(tags_kept(x["source"], h) for x, h, _ in mine) / len(mine), 3)
        if kind == "unpunctuated":
            row["words_vs_one_by_one"] = round(sum(len(h.split()) for h in mh) / sum(len(c.split()) for c in ch), 3)
            row["bleu_vs_one_by_one"] = bleu(mh, ch)
        row["bleu"], row["bleu_clean"] = bleu(mh, refs), bleu(ch, cr)
        report[kind] = row
        messy_hyps += mh
        messy_refs += refs
        clean_hyps += ch
        clean_refs += cr
    report["bleu_messy"], report["bleu_clean"] = bleu(messy_hyps, messy_refs), bleu(clean_hyps, clean_refs)
    report["clean_identical_to_off"] = None
    report["_clean"] = clean
    return report


def glossary_report(translator: Translator, sources: list[str], references: list[str], path: str) -> dict:
    """Clean lines holding a glossary term, translated with and without the glossary: the share of terms whose
    target is in the translation, and BLEU."""
    glossary = load_glossary(path)
    lines = [i for i, s in enumerate(sources) if glossary.find(s)]
    wanted = [[glossary.target(sources[i][a:b], a == 0) for a, b in glossary.find(sources[i])] for i in lines]
    report = {"glossary": path, "lines": len(lines), "terms": sum(map(len, wanted))}
    for arm, g in (("without", None), ("with", glossary)):
        translator.set_glossary(g)
        hyps = translator.translate([sources[i] for i in lines])
        present = sum(w in h for ws, h in zip(wanted, hyps) for w in ws)
        report[arm] = {"terms_present": round(present / max(1, report["terms"]), 3),
                       "bleu": bleu(hyps, [references[i] for i in lines])}
    translator.set_glossary(None)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--beam", type=int, default=None)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", help="write the report as JSON here too")
    parser.add_argument("--glossary", help="a glossary (source<TAB>target) to enforce on the clean lines holding its "
                                           "terms (bench/glossary.en-de.tsv for en-de: deliberately unusual choices)")
    args = parser.parse_args(argv)
    sources, references = (list(x) for x in RunDir.of(args.run).split_texts(args.split))
    items = build(sources, references, seed=1)
    translator = Translator.from_run(args.run, threads=args.threads)
    if args.beam:
        translator.set_decoding([f"decode.beam={args.beam}"])
    reports = {}
    for arm, overrides, markup in (("off", OFF, "none"), ("on", [o.replace("false", "true") for o in OFF], "html")):
        translator.set_decoding(overrides)
        reports[arm] = evaluate(translator, items, sources, references, markup)
    off_clean, on_clean = reports["off"].pop("_clean"), reports["on"].pop("_clean")
    differ = sum(a != b for a, b in zip(off_clean, on_clean))
    reports["on"]["clean_identical_to_off"] = round(1 - differ / len(on_clean), 4)
    if args.glossary:
        reports["glossary"] = glossary_report(translator, sources, references, args.glossary)
    reports["setup"] = {"run": args.run, "split": args.split, "messy_lines": len(items), "clean_lines": len(sources),
                        "beam": translator.cfg.decode.beam, "precision": translator.precision,
                        "bf16_units": bf16_units(translator.device), "clean_lines_that_differ": differ}
    text = json.dumps(reports, indent=1, ensure_ascii=False)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
