"""What `mt translate` writes for one input line, in each of its formats.

- ``text``: the translation; with ``alignment``, ``translation ||| 0-0 1-2 ...`` (Marian's layout).
- n-best (``nbest`` > 1): ``i ||| translation ||| score`` for each of the line's best N, best first (Moses and
  Marian; ``i`` counts input lines from 0), no blank lines.
- ``jsonl``: one JSON object per input line: ``i``, ``source``, ``translation``, ``score``, ``nbest`` (a list of
  ``{"translation", "score"}``), ``alignment`` when asked for; where the text pipeline (``mt.decode.pipeline``)
  acted: ``sentences`` (the line's sentences, where it had several), ``protected`` (the spans copied, each
  ``{"text", "kind"}``, and ``"output"`` for a glossary term) with ``fallbacks`` (how many spans and tags were
  placed without attention), ``model_input`` (what the model read).

Scores are the search's: the log-probability divided by the length penalty in beam search, the plain
log-probability in greedy search. Alignments are hard alignments of subword positions, ``s-t`` with ``s`` the
source subword and ``t`` the target subword (0-based; SentencePiece pieces as ``mt.data.tokenizer`` makes them,
EOS excluded), each target subword aligned to the source subword it attends to most. A line translated in parts
(several sentences, or longer than ``data.max_tokens``) has no alignment; where the pipeline changed a sentence,
the alignment is between the pieces of ``model_input`` and the translation before its spans were put back.
"""

from __future__ import annotations

import json

from mt.decode.translator import Translation
from mt.errors import MTError
from mt.text import one_line

__all__ = ["FORMATS", "alignment", "format_line", "record"]

FORMATS = ("text", "jsonl")


def alignment(t: Translation) -> str:
    """``s-t`` pairs from the best hypothesis' attention; empty without attention."""
    if t.attention is None or not t.src_pieces:
        return ""
    steps = len(t.tgt_pieces) - (1 if t.tgt_pieces and t.tgt_pieces[-1] == "</s>" else 0)
    best = t.attention[:steps, : len(t.src_pieces)].argmax(dim=1).tolist()  # (steps,) source position per target
    return " ".join(f"{s}-{j}" for j, s in enumerate(best))


def record(i: int, t: Translation, nbest: int = 1, with_alignment: bool = False) -> dict:
    """Input line ``i``'s translation ``t`` as the ``jsonl`` format's object (also `mt serve`'s batch answer)."""
    out = {"i": i, "source": t.source, "translation": t.text, "score": round(t.score, 4),
           "nbest": [{"translation": text, "score": round(score, 4)} for score, text in t.nbest[:nbest]]}
    if t.sentences:
        out["sentences"] = t.sentences
    if t.spans:
        out["protected"] = t.spans
        out["fallbacks"] = t.fallbacks
    if t.model_input is not None:
        out["model_input"] = t.model_input
    if with_alignment:
        out["alignment"] = alignment(t)
    return out


def format_line(i: int, t: Translation, fmt: str = "text", nbest: int = 1, with_alignment: bool = False) -> str:
    """Input line ``i``'s translation ``t`` as the text to write, newline(s) included."""
    if fmt == "jsonl":
        return json.dumps(record(i, t, nbest, with_alignment), ensure_ascii=False) + "\n"
    if fmt != "text":
        raise MTError(f"unknown output format '{fmt}'; valid: {', '.join(FORMATS)}")
    if nbest > 1:  # one line per entry: line breaks of a multi-line input become spaces
        return "".join(f"{i} ||| {one_line(text)} ||| {score:.4f}\n" for score, text in t.nbest[:nbest])
    return f"{one_line(t.text)} ||| {alignment(t)}\n" if with_alignment else one_line(t.text) + "\n"
