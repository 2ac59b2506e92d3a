"""The text around the model: what happens to a text before the model reads it and to the translation after.

    text ─markup─▶ plain ─split─▶ sentences ─protect─▶ spans out ─uncase─▶ model
         ◀─tags back─ ◀─join─ ◀─spans back─ ◀─recase─ translation

Each step is a decode setting: ``decode.markup`` (none, html, markdown: ``mt.decode.markup``),
``decode.split_sentences`` (``mt.decode.sentences``), ``decode.protect_spans`` (``mt.decode.protect``),
``decode.recase`` (``mt.decode.casing``); with markup none and the others off, a text is normalised
(``mt.text.normalize``) and translated whole, as the model was trained. ``Translator.translate`` runs this pipeline
around its search.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mt.decode.align import Insertion, insert, output_words, places
from mt.decode.casing import recase, uncase
from mt.decode.markup import Tag, escape, parse
from mt.decode.protect import Glossary, Protected, protect, word_map
from mt.decode.sentences import Layout, split_text
from mt.text import normalize

__all__ = ["Document", "Sentence", "TextPipeline"]


@dataclass
class Sentence:
    source: str  # as it stands in the input (normalised, without its markup)
    protected: Protected  # protected.text: what the model reads (after uncasing)
    style: str = ""  # "upper", "title" or "" (mt.decode.casing)
    tags: list[tuple[int, int, Tag]] = field(default_factory=list)  # (word boundary, offset in source, tag) inside
    lead: str = ""  # tags at the sentence's start, put back before its translation
    trail: str = ""  # tags at its end, put back after it


@dataclass
class Document:
    layout: Layout  # its gaps hold the markup between sentences
    sentences: list[Sentence] = field(default_factory=list)


class TextPipeline:
    def __init__(self, language: str, known: frozenset[str], split: bool = True, protect_spans: bool = True,
                 recase_headlines: bool = True, in_vocabulary: Callable[[str], bool] = lambda _: False,
                 markup: str = "none", glossary: Glossary | None = None):
        """``known``/``in_vocabulary``: what the source vocabulary holds; ``glossary``: terms to enforce (both
        ``mt.decode.protect``; a glossary applies even with ``protect_spans`` off)."""
        self.language, self.known, self.in_vocabulary, self.glossary = language, known, in_vocabulary, glossary
        self.split, self.protect_spans, self.recase_headlines, self.markup = split, protect_spans, recase_headlines, markup

    def prepare(self, text: str) -> Document:
        """A text -> its sentences, each with the text the model should read."""
        plain, tags = parse(text, self.markup) if self.markup != "none" else (text, [])
        if self.split:
            layout = split_text(plain, self.language, [t.at for t in tags if t.block])
        else:
            stripped = plain.strip()
            lead = plain[: len(plain) - len(plain.lstrip())]
            layout = Layout([stripped] if stripped else [], [lead, plain[len(lead) + len(stripped):]] if stripped
                            else [plain])
        sentences = [self._sentence(s) for s in layout.sentences]
        if tags:
            _place_tags(layout, sentences, tags)
        else:
            layout.gaps[0] = layout.gaps[-1] = ""  # a translation starts and ends with its first and last words
        return Document(layout, sentences)

    def _sentence(self, source: str) -> Sentence:
        source = normalize(source)
        if self.protect_spans:
            protected = protect(source, self.known, self.in_vocabulary, self.glossary)
        else:
            protected = protect(source, frozenset(), glossary=self.glossary, only_glossary=True) if self.glossary \
                else Protected(source)
        style = ""
        if self.recase_headlines:
            protected.text, style = uncase(protected.text)
        return Sentence(source, protected, style)

    def aligns(self, sentence: Sentence) -> bool:
        """Whether ``finish`` needs the search's attention: spans or tags go back inside the sentence."""
        return bool(sentence.protected.spans or sentence.tags)

    def changes(self, sentence: Sentence) -> bool:
        """Whether ``finish`` changes the model's translation of ``sentence``."""
        return bool(self.markup != "none" or sentence.protected.spans or sentence.style)

    def finish(self, sentence: Sentence, text: str, pieces: list[str], attention: torch.Tensor | None,
               source_pieces: list[str]) -> str:
        """The model's translation of ``sentence.protected.text`` -> the translation of ``sentence.source``:
        re-cased, its spans and tags back in place. ``pieces``/``attention``/``source_pieces``: as
        ``mt.decode.align.places``, which places spans and tags together."""
        p, tags = sentence.protected, sentence.tags
        text = escape(recase(text, sentence.style), self.markup)
        n_out = output_words(pieces, text)
        mapping = word_map(p, len(sentence.source.split())) if tags else []
        found, fallbacks = places([s.word for s in p.spans] + [mapping[k] for k, _, _ in tags], len(p.text.split()),
                                  pieces, attention, source_pieces, n_out)
        p.fallbacks += fallbacks
        at_spans, at_tags = found[: len(p.spans)], _in_order(found[len(p.spans):], [t for _, _, t in tags],
                                                             [k for k, _, _ in tags], n_out)
        items = [(span.at, Insertion(place, escape(span.output, self.markup))) for span, place in zip(p.spans, at_spans)]
        items += [(at, Insertion(place, tag.text, _GLUE[tag.role])) for place, (_, at, tag) in zip(at_tags, tags)]
        items.sort(key=lambda x: (x[1].place, x[0]))
        return sentence.lead + insert(text, [i for _, i in items]) + sentence.trail


_GLUE = {"open": "next", "close": "previous", "void": ""}  # an opening tag sticks to the word after it ...


def _in_order(found: list[int], tags: list[Tag], source: list[int], n_out: int) -> list[int]:
    """Tag places that keep the tags' order; an element that held words in the source holds at least one."""
    out: list[int] = []
    opened: list[int] = []  # indexes of open tags awaiting their close
    for i, (place, tag) in enumerate(zip(found, tags)):
        place = max(place, out[-1] if out else 0)
        if tag.role == "open":
            opened.append(i)
        elif tag.role == "close" and opened:
            j = opened.pop()
            if place == out[j] and source[i] > source[j] and place < n_out:
                place += 1
        out.append(place)
    return out


def _place_tags(layout: Layout, sentences: list[Sentence], tags: list[Tag]) -> None:
    """Tags to where they go back: into a gap between sentences, at a sentence's edge, or inside it (by word)."""
    spans, at = [], 0  # (start, end) of each sentence in the plain text
    for gap, s in zip(layout.gaps, layout.sentences):
        at += len(gap)
        spans.append((at, at + len(s)))
        at += len(s)
    gap_tags: dict[int, list[tuple[int, str]]] = {}
    ends = [end for _, end in spans]
    word_starts: dict[int, list[int]] = {}  # sentence -> offsets of its words (made when a tag is inside it)
    for tag in tags:
        j = _owner(spans, ends, tag)
        if j is None:  # between sentences (or no sentence at all): into the gap, at its offset
            g = bisect.bisect_right(ends, tag.at)  # the sentences that end at or before it
            gap_start = spans[g - 1][1] if g else 0
            gap_tags.setdefault(g, []).append((tag.at - gap_start, tag.text))
            continue
        start, end = spans[j]
        if tag.at <= start and tag.role != "close":
            sentences[j].lead += tag.text
        elif tag.at >= end:
            sentences[j].trail += tag.text
        else:
            if j not in word_starts:
                word_starts[j] = [m.start() for m in re.finditer(r"\S+", layout.sentences[j])]
            words = bisect.bisect_left(word_starts[j], tag.at - start)  # the words that start before the tag
            sentences[j].tags.append((words, tag.at - start, tag))
    for g, inserted in gap_tags.items():
        gap, out, last = layout.gaps[g], "", 0
        for offset, text in inserted:
            out += gap[last:offset] + text
            last = offset
        layout.gaps[g] = out + gap[last:]


def _owner(spans: list[tuple[int, int]], ends: list[int], tag: Tag) -> int | None:
    """The sentence a tag belongs to: one it is inside, or whose edge it touches (an opening tag the sentence it
    starts, a closing or void tag the sentence it ends); None for a tag in a gap between sentences. ``ends``: the
    sentences' ends, for a binary search."""
    first = bisect.bisect_left(ends, tag.at)  # the first sentence that ends at or after the tag
    for j in range(first, min(first + 2, len(spans))):
        start, end = spans[j]
        if start < tag.at < end or (tag.at == end and tag.role != "open") or (tag.at == start and tag.role != "close"):
            return j
    return None
