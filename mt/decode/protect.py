"""Spans a translator must copy, not translate: links, e-mail addresses, numbers and codes, and words in characters
the model has never seen (a name in another script).

A model trained on clean sentences cannot copy what it has not seen: given ``Łódź`` or ``LH 4217`` it invents
words (docs/results.md, "Messy input"). So each protected span is taken out of the sentence before the model reads
it, with the brackets or the colon that frame it, and put back into the translation afterwards, where the model's
attention says its neighbours went:

    protected = protect("Flight LH 4217 leaves at 07:45.", known)
    protected.text                     # "Flight leaves at."       what the model translates
    protected.spans                    # [Span("LH 4217", word=1), Span("07:45", word=3)]
    restore(protected, pieces, attention)   # "Der Flug LH 4217 startet um 07:45."

A span's ``word`` is the number of words of ``text`` before it: 0 puts it first, ``len(words)`` last (before the
final punctuation); in between, the translation is cut where its pieces stop attending to the words before the span
and start attending to the words after it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mt.decode.align import Insertion, insert, output_words, places
from mt.errors import MTError
from mt.text import read_text_file

__all__ = ["Glossary", "Protected", "Span", "known_characters", "load_glossary", "protect", "restore", "word_map"]

_URL = r"(?:https?://|www\.)[^\s<>\"]+|\b[\w-]+(?:\.[\w-]+)+/[^\s<>\"]*"
_EMAIL = r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
# a number, time, date, version or code: a run of word characters and inner punctuation holding a digit, with an
# optional prefix of capitals ("LH 4217", "RFC 9110", "ISBN 978-..."), a leading sign, # or currency symbol, and
# an optional unit of measurement ("2.7 km")
_UNIT = r"(?:\s?(?:km/h|km|cm|mm|m|kg|mg|g|ml|l|kWh|kW|W|V|Hz|kHz|MHz|GHz|kB|MB|GB|TB|°C|°F|mph)\b)?"
_NUMBER = r"(?:\b[A-Z]{1,5}[ -](?=[#+]?\d))?[#+$€£¥-]?\b[\w.,:/%+'-]*\d[\w.,:/%+'-]*%?" + _UNIT
_SPAN = re.compile(f"(?P<url>{_URL})|(?P<email>{_EMAIL})|(?P<number>{_NUMBER})")
_TRAILING = ".,;:!?'\")]}»”’"  # punctuation after a span belongs to the sentence (the full stop after a link)
_OPEN, _CLOSE = "([{\"'«“‘", ")]}\"'»”’"


@dataclass(frozen=True)
class Span:
    text: str  # as it stands in the input, with the brackets or colon that framed it ("(LH 4217)", "Łódź:")
    word: int  # how many words of the protected text come before it
    kind: str  # url, email, number, unknown (characters the model has never seen) or glossary
    at: int = 0  # its offset in the sentence
    replacement: str | None = None  # what goes into the translation instead of ``text`` (a glossary's target term)

    @property
    def output(self) -> str:
        return self.text if self.replacement is None else self.replacement


@dataclass
class Protected:
    text: str  # the sentence without its protected spans: what the model translates
    spans: list[Span] = field(default_factory=list)
    fallbacks: int = 0  # spans that restore placed by relative position, without attention to go by


def known_characters(sp) -> frozenset[str]:
    """Every character that occurs in a piece of the SentencePiece model ``sp`` (byte pieces and control symbols
    apart): what the model has seen in training."""
    chars: set[str] = set()
    for i in range(sp.get_piece_size()):
        if not (sp.is_byte(i) or sp.is_control(i) or sp.is_unknown(i)):
            chars.update(sp.id_to_piece(i).replace("▁", ""))
    return frozenset(chars)


class Glossary:
    """Terms and their required translations (``source<TAB>target`` lines, or one term a line: kept as it is). A
    term in lower case matches in any case, one with capitals only as written; longer terms win."""

    def __init__(self, terms: dict[str, str]):
        self.terms = {k.lower() if k == k.lower() else k: v for k, v in terms.items() if k.strip()}
        ordered = sorted(self.terms, key=len, reverse=True)
        self.pattern = re.compile("|".join(f"(?<!\\w)(?{'i' if t == t.lower() else ''}:{re.escape(t)})(?!\\w)"
                                           for t in ordered)) if ordered else None

    def target(self, matched: str, at_start: bool) -> str:
        out = self.terms.get(matched, self.terms.get(matched.lower(), matched))
        return out[:1].upper() + out[1:] if at_start and matched[:1].isupper() else out

    def find(self, sentence: str) -> list[tuple[int, int]]:
        return [(m.start(), m.end()) for m in self.pattern.finditer(sentence)] if self.pattern else []


def protect(sentence: str, known: frozenset[str], in_vocabulary: Callable[[str], bool] = lambda _: False,
            glossary: Glossary | None = None, only_glossary: bool = False) -> Protected:
    """``sentence`` (one line, normalised) -> the text the model should read and the spans taken out of it.
    ``in_vocabulary(number)``: True where the source vocabulary holds the number as one piece ("2", "10"): a number
    that common in training is the model's to translate ("2 girls" -> "Zwei Mädchen"). ``glossary``: its terms are
    taken out too, and their target terms put into the translation (``only_glossary``: nothing else is)."""
    terms = [(s, e, "glossary") for s, e in glossary.find(sentence)] if glossary else []
    found = [] if only_glossary else _outside([(m.start(), m.end(), m.lastgroup) for m in _SPAN.finditer(sentence)],
                                              terms)
    if not only_glossary:
        found += _unknown_words(sentence, known, sorted(found + terms))
    found = [(start, end, kind) for start, end, kind in _merge(sorted(found), sentence)
             if kind != "number" or not in_vocabulary(sentence[start:end])]
    found = sorted(found + terms)
    if not found:
        return Protected(sentence)
    kept: list[str] = []
    spans: list[Span] = []
    at = words = 0  # words: of the protected text so far (linear in the sentence, however many spans)
    for start, end, kind in found:
        if kind != "glossary":
            start, end = _frame(sentence, *_trim(sentence, start, end))
        if start < at:
            continue
        kept.append(sentence[at:start])
        words = _count_words(kept[-1], words)
        replacement = glossary.target(sentence[start:end], not words) if kind == "glossary" else None
        spans.append(Span(sentence[start:end], words, kind, start, replacement))
        at = end
    kept.append(sentence[at:])
    text = " ".join(" ".join(kept).split())
    text = re.sub(f"\\s+([{_ATTACHED}])", r"\1", text)  # "leaves at ." -> "leaves at."
    if not any(ch.isalnum() for ch in text):  # nothing left to translate: copy the sentence as it is
        return Protected("", [Span(sentence, 0, "whole", 0, _replaced(sentence, spans))])
    return Protected(text, spans)


def _replaced(sentence: str, spans: list[Span]) -> str | None:
    """``sentence`` with its glossary terms replaced by their targets (None where it has none)."""
    if not any(s.replacement is not None for s in spans):
        return None
    out, at = "", 0
    for s in spans:
        out += sentence[at:s.at] + s.output
        at = s.at + len(s.text)
    return out + sentence[at:]


_ATTACHED = ".,;:!?"  # punctuation that joins the word before it once the span between them is gone


def _count_words(segment: str, words: int) -> int:
    """``words`` plus the words ``segment`` adds to the protected text (punctuation after a removed span joins the
    word before it: "leaves at ." -> "leaves at.")."""
    for token in segment.split():
        if not (words and token[0] in _ATTACHED):
            words += 1
    return words


def _outside(found: list[tuple[int, int, str]], taken: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """The spans of ``found`` (in order) that overlap none of ``taken`` (in order, not overlapping each other)."""
    out, j = [], 0
    for start, end, kind in found:
        while j < len(taken) and taken[j][1] <= start:
            j += 1
        if j == len(taken) or taken[j][0] >= end:
            out.append((start, end, kind))
    return out


def _unknown_words(sentence: str, known: frozenset[str], found: list[tuple[int, int, str]]) -> list:
    """Words holding a letter the model has never seen in either case, outside spans already found (``found``
    sorted; a headline in capitals is re-cased, not copied)."""
    out, j = [], 0
    for m in re.finditer(r"\S+", sentence):
        while j < len(found) and found[j][1] <= m.start():
            j += 1
        if j < len(found) and found[j][0] <= m.start():
            continue
        if any(ch.isalpha() and ch not in known and ch.lower() not in known for ch in m.group()):
            out.append((m.start(), m.end(), "unknown"))
    return out


def _merge(found: list[tuple[int, int, str]], sentence: str) -> list[tuple[int, int, str]]:
    """Spans separated by nothing but spaces become one ("Nguyễn Thị Hương", "+49 30 1234567"); the merged span
    is of the kind "number" only where all its parts are."""
    merged: list[tuple[int, int, str]] = []
    for start, end, kind in found:
        if merged and start >= merged[-1][1] and not sentence[merged[-1][1]:start].strip():
            kind = kind if merged[-1][2] == "number" else merged[-1][2]
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]), kind)
        elif not merged or start >= merged[-1][1]:
            merged.append((start, end, kind))
    return merged


def _trim(sentence: str, start: int, end: int) -> tuple[int, int]:
    """Sentence punctuation glued to a span's end stays in the sentence, unless the span opened its bracket."""
    while end > start + 1 and sentence[end - 1] in _TRAILING:
        inner = sentence[start:end - 1]
        closer = sentence[end - 1]
        if closer in _CLOSE and _OPEN[_CLOSE.index(closer)] in inner:
            break
        end -= 1
    return start, end


def _frame(sentence: str, start: int, end: int) -> tuple[int, int]:
    """Widen a span to the brackets around it ("(LH 4217)") or the colon after it at the start ("Łódź: ...")."""
    if start > 0 and end < len(sentence) and sentence[start - 1] in _OPEN \
            and sentence[end] == _CLOSE[_OPEN.index(sentence[start - 1])]:
        return start - 1, end + 1
    if not sentence[:start].strip() and sentence[end:end + 1] in (":", ",") and not sentence[end + 1:end + 2].strip():
        return start, end + 1
    return start, end


def restore(protected: Protected, pieces: list[str], attention: torch.Tensor | None, source_pieces: list[str],
            text: str) -> str:
    """Put the spans back into the translation ``text`` of ``protected.text``.

    ``pieces``: the translation's SentencePiece pieces (``text`` decoded from them); ``attention``: (len(pieces) or
    one more for the end of sentence, len(source_pieces)), or None (the spans then go by relative position, counted
    in ``protected.fallbacks``). ``mt.decode.pipeline`` does the same for spans and tags together."""
    if not protected.spans:
        return text
    found, fallbacks = places([s.word for s in protected.spans], len(protected.text.split()), pieces, attention,
                              source_pieces, output_words(pieces, text))
    protected.fallbacks += fallbacks
    return insert(text, [Insertion(place, span.output) for place, span in zip(found, protected.spans)])


def word_map(protected: Protected, n_words: int) -> list[int]:
    """For each word boundary 0..n_words of the sentence before protection, the boundary of ``protected.text``
    it became (a boundary inside a span becomes the span's)."""
    n = len(protected.text.split())
    spans_at: dict[int, list[Span]] = {}
    for span in protected.spans:
        spans_at.setdefault(span.word, []).append(span)
    order: list[int] = []  # the protected boundary before each word of the original sentence
    for w in range(n + 1):
        for span in spans_at.get(w, []):
            order.extend([w] * len(span.text.split()))
        if w < n:
            order.append(w)
    return [order[k] if k < len(order) else n for k in range(n_words + 1)]


def load_glossary(path: str) -> Glossary:
    """A glossary file: UTF-8 lines ``source<TAB>target``, or one term a line (kept as it is); blank lines and
    lines starting with # are skipped. A line of more than two fields is an error naming the file and line."""
    terms: dict[str, str] = {}
    for number, line in enumerate(read_text_file(path, "glossary"), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) > 2 or not fields[0] or (len(fields) == 2 and not fields[1]):
            raise MTError(f"{path} line {number}: expected 'source<TAB>target' or one term, got {line[:60]!r}")
        terms[fields[0]] = fields[-1]
    return Glossary(terms)
