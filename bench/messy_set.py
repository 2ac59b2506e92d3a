"""A "messy input" set built from a clean split: what people paste, with references that keep what a translator keeps.

    python -m bench.messy_set --run runs/multi30k-en-de --split val --out messy/val

Each clean pair (source, reference) becomes one messy pair of one kind, chosen in turn with a fixed seed:

- ``name``, ``number``, ``code``, ``url``, ``email``: a span (a name in another script, a time, a flight number, a
  link ...) inserted into the source at the start (``SPAN: ...``), in the middle (``... (SPAN) ...``, after a word
  at a random position) or at the end (``... (SPAN).``), and into the reference the same way, in the middle after
  the word at the same relative position: a translator keeps such spans as they are.
- ``tag``: a run of words wrapped in an inline tag (``<b>``, ``<i>``, ``<a href="...">``), the reference's words at
  the same relative position wrapped in the same tag.
- ``caps``: source and reference in capitals (a headline); ``title``: both in Title Case.
- ``sentences``: 2-4 consecutive pairs joined into one line (a paragraph), each ending with punctuation.
- ``unpunctuated``: 8 consecutive sources without their final full stops joined by spaces (a transcript); its
  reference is the 8 references joined.

Writes ``messy.jsonl`` (one object per line: kind, source, reference, the spans and where they went, the clean
lines it was made from) and ``clean.jsonl`` (the clean pairs used, for the clean-text score). Nothing here is
tuned on: the kinds and spans were fixed before the handling was written (docs/results.md, "Messy input").
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from mt.files import atomic_write
from mt.run import RunDir

SPANS = {
    "name": ["Zoë", "Łódź", "東京", "Дмитрий", "Αθήνα", "محمد", "김민준", "Nguyễn Thị Hương", "Þórunn", "Kraków",
             "Søren", "İstanbul", "Đà Nẵng", "Jyväskylä", "Ōsaka", "Chiara D'Ambrosio"],
    "number": ["07:45", "4217", "3.5", "1,250", "2026-12-07", "19.99", "100%", "42", "12/25", "0.001", "+49 30 1234567",
               "1984", "6:30", "15.000", "2.7 km", "98.6"],
    "code": ["LH 4217", "A3-77B", "#12345", "ISBN 978-3-16-148410-0", "SKU-0042", "RFC 9110", "v2.13.0", "X11",
             "COVID-19", "B-52", "E-7"],
    "url": ["https://example.org/path?id=42", "www.wikipedia.org", "http://localhost:8080/", "https://t.co/a1B2c3",
            "example.com/docs/index.html", "https://github.com/pytorch/pytorch/issues/1234"],
    "email": ["zoe.smith@example.com", "info@uni-leipzig.de", "a_b-c@mail.example.org", "support@company.co.uk"],
}
TAGS = [("<b>", "</b>"), ("<i>", "</i>"), ('<a href="https://example.org/a?b=1&amp;c=2">', "</a>"),
        ("<code>", "</code>"), ('<span class="x">', "</span>")]
KINDS = ["name", "number", "code", "url", "email", "tag", "caps", "title", "sentences", "unpunctuated"]
UNPUNCTUATED = 8  # sentences per unpunctuated line


def insert(words: list[str], span: str, where: str, at: float) -> str:
    """``span`` into a sentence: ``SPAN: ...`` (start), ``... (SPAN) ...`` after word ``at`` of the sentence
    (middle; ``at`` in [0, 1) is the relative position) or ``... (SPAN).`` (end, before final punctuation)."""
    if where == "start":
        return f"{span}: " + " ".join(words)
    if where == "end":
        last = words[-1]
        stem = last.rstrip(".!?")
        return " ".join(words[:-1] + [f"{stem} ({span}){last[len(stem):]}"])
    k = min(len(words) - 1, max(1, int(at * len(words)))) if len(words) > 1 else 1
    return " ".join(words[:k] + [f"({span})"] + words[k:])


def wrap(words: list[str], tag: tuple[str, str], at: float, length: int) -> str:
    k = min(len(words) - 1, int(at * len(words)))
    n = max(1, min(length, len(words) - k))
    inner = words[k:k + n]
    last = inner[-1]
    stem = last.rstrip(".!?,") or last  # a final full stop stays outside the tag
    tail = last[len(stem):]
    inner[-1] = stem
    return " ".join(words[:k] + [tag[0] + " ".join(inner) + tag[1] + tail] + words[k + n:])


def _full_stop(sentence: str) -> str:
    sentence = sentence.rstrip()
    return sentence if sentence[-1:] in ".!?" else sentence + "."


def build(sources: list[str], references: list[str], seed: int) -> list[dict]:
    rng = random.Random(seed)
    out: list[dict] = []
    i, turn = 0, 0
    while i < len(sources):
        kind = KINDS[turn % len(KINDS)]
        turn += 1
        src, ref = sources[i], references[i]
        item: dict = {"kind": kind, "lines": [i]}
        if kind in SPANS:
            span, where, at = rng.choice(SPANS[kind]), rng.choice(["start", "middle", "end"]), rng.random()
            item.update(source=insert(src.split(), span, where, at), reference=insert(ref.split(), span, where, at),
                        spans=[span], where=where)
        elif kind == "tag":
            tag, at, length = rng.choice(TAGS), rng.random(), rng.randint(1, 3)
            item.update(source=wrap(src.split(), tag, at, length), reference=wrap(ref.split(), tag, at, length),
                        tags=[tag[0], tag[1]])
        elif kind in ("caps", "title"):
            case = str.upper if kind == "caps" else str.title
            item.update(source=case(src), reference=case(ref))
        else:
            size = rng.randint(2, 4) if kind == "sentences" else UNPUNCTUATED
            if i + size > len(sources):
                break
            srcs, refs = sources[i:i + size], references[i:i + size]
            if kind == "unpunctuated":
                srcs = [s.rstrip().rstrip(".") for s in srcs]
            else:  # sentences of a paragraph end with punctuation (Multi30k's captions often do not)
                srcs, refs = [_full_stop(s) for s in srcs], [_full_stop(r) for r in refs]
            item.update(source=" ".join(srcs), reference=" ".join(refs), lines=list(range(i, i + size)))
            i += size - 1
        out.append(item)
        i += 1
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--split", default="val", help="the clean split to start from (val to tune, a test split to "
                                                       "report)")
    parser.add_argument("--out", required=True, help="folder for messy.jsonl and clean.jsonl")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    sources, references = RunDir.of(args.run).split_texts(args.split)
    items = build(list(sources), list(references), args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "messy.jsonl", "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in items))
    atomic_write(out / "clean.jsonl", "".join(json.dumps({"source": s, "reference": r}, ensure_ascii=False) + "\n"
                                              for s, r in zip(sources, references)))
    counts = {k: sum(x["kind"] == k for x in items) for k in KINDS}
    print(f"{len(items)} messy lines from {args.split} ({len(sources)} clean pairs) in {out}: {counts}")


if __name__ == "__main__":
    main()
