"""Text -> sentences, and the translations of the sentences -> text laid out as the input was.

A model trained on sentence pairs translates one sentence at a time best: given several at once it stops early, and
given a long stretch without sentence punctuation (a list, a chat, a transcript) it drops half of it
(docs/results.md, "Long lines" and "Messy input"). So every input is split into sentences by ``sentencex`` (a
maintained rule-based splitter with abbreviation lists for many languages), each sentence is translated alone, and
the translations are put back with the spacing, line breaks and blank lines of the input:

    layout = split_text("A dog runs.  A cat sits.\\n\\nThe end.", "en")
    layout.sentences                      # ["A dog runs.", "A cat sits.", "The end."]
    layout.join(["Ein Hund rennt.", "Eine Katze sitzt.", "Das Ende."])
                                          # "Ein Hund rennt.  Eine Katze sitzt.\\n\\nDas Ende."

A "sentence" far longer than those the model learned from (``LONG`` times their mean) is cut into parts of about their length
(``cut_to_length``), at the word boundary nearest to it, preferring one before a capital letter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sentencex import segment

__all__ = ["LONG", "Layout", "cut_to_length", "split_text"]

LONG = 3  # a "sentence" of more than LONG x the training sentences' mean length is cut (docs/recipe.md)

Count = Callable[[list[str]], list[int]]  # texts -> their lengths in subword tokens (one tokenizer call)


@dataclass
class Layout:
    sentences: list[str]  # stripped, non-empty
    gaps: list[str]  # len(sentences) + 1: the whitespace before each sentence, then after the last

    def join(self, translations: list[str]) -> str:
        if len(translations) != len(self.sentences):
            raise ValueError(f"{len(translations)} translations for {len(self.sentences)} sentences")
        return "".join(g + t for g, t in zip(self.gaps, translations)) + self.gaps[-1]


def split_text(text: str, language: str, breaks: Iterable[int] = ()) -> Layout:
    """``text`` (any whitespace, line breaks and blank lines included) -> its sentences and the gaps between them;
    every line break ends a sentence, and so does every offset in ``breaks`` (where markup puts a block boundary).
    ``language``: an ISO 639 code (``sentencex`` falls back to related languages, then to English rules)."""
    sentences: list[str] = []
    gaps = [""]
    cuts = sorted({b for b in breaks if 0 < b < len(text)})
    blocks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    pieces = (piece for block in blocks for line in block.splitlines(keepends=True)
              for piece in segment(language or "en", line))
    for piece in pieces:  # a line break always ends a sentence (a list, a poem, lines of a form)
        stripped = piece.strip()
        if not stripped:
            gaps[-1] += piece
            continue
        lead = piece[: len(piece) - len(piece.lstrip())]
        gaps[-1] += lead
        sentences.append(stripped)
        gaps.append(piece[len(lead) + len(stripped):])
    return Layout(sentences, gaps)


def cut_to_length(sentence: str, count: Count, target: int) -> list[str]:
    """A sentence of more than ``LONG`` x ``target`` tokens -> consecutive parts of about ``target`` tokens (between
    half and one and a half times it), cut at spaces, before a word with a capital where one is in reach;
    ``" ".join(parts)`` is the sentence. Shorter sentences come back whole."""
    words = sentence.split(" ")
    sizes = count(words)
    if sum(sizes) <= LONG * target or len(words) < 2:
        return [sentence]
    parts: list[str] = []
    start = 0
    while start < len(words):
        total, best, best_score = 0, None, None
        for end in range(start + 1, len(words) + 1):
            total += sizes[end - 1]
            if end == len(words) and total <= 1.5 * target:
                best = end
                break
            if total < target / 2:
                continue
            if total > 1.5 * target and best is not None:
                break
            capital = end < len(words) and words[end][:1].isupper()
            score = abs(total - target) - (target / 2 if capital else 0)
            if best_score is None or score < best_score:
                best, best_score = end, score
        best = best or len(words)
        parts.append(" ".join(words[start:best]))
        start = best
    return parts
