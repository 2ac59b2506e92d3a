"""Sentences over the model's limit: cut into parts that fit, translated part by part and joined.

Texts reach this step already split into sentences (``mt.decode.sentences``); what is still over ``data.max_tokens``
subwords is cut at sentence punctuation the splitter left joined, then at spaces into parts that fit, and a "word"
longer than the limit inside it. Every character of the sentence is in exactly one part, in order, so no text is
lost; its translation is the translations of its parts joined by spaces.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["SENTENCE_END", "split_to_fit"]

# where a sentence ends: whitespace after . ! ? …, or right after the CJK full stops (written without a space)
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])\s*")

Count = Callable[[list[str]], list[int]]  # texts -> their lengths in subword tokens (one tokenizer call)


def split_to_fit(text: str, count: Count, limit: int) -> list[str]:
    """``text`` (normalised: single spaces) -> consecutive parts of at most ``limit`` tokens each by ``count``.
    A text within the limit is one part; otherwise ``" ".join(parts) == text`` unless a single word had to be cut
    (then its pieces are parts of their own, or glued to their neighbours without a space)."""
    if count([text])[0] <= limit:
        return [text]
    sentences = SENTENCE_END.split(text)
    parts: list[str] = []
    for sentence, n in zip(sentences, count(sentences)):
        if sentence:
            if n <= limit:
                parts.append(sentence)
            else:
                units = _words(sentence, count, limit)  # (glue before it, text): words and spans of long words
                parts.extend(_pack(units, count([u for _, u in units]), limit))
    return parts


def _words(sentence: str, count: Count, limit: int) -> list[tuple[str, str]]:
    words = sentence.split(" ")
    out: list[tuple[str, str]] = []
    for word, n in zip(words, count(words)):
        if n <= limit:
            out.append((" ", word))
        else:
            spans = _cut(word, count, limit)
            out.extend([(" ", spans[0])] + [("", s) for s in spans[1:]])
    return out


def _cut(word: str, count: Count, limit: int) -> list[str]:
    """A word over the limit -> character spans, joined without spaces it is the word again; spans are halved
    until each fits (a span of one character always stays)."""
    spans = [word[i:i + limit] for i in range(0, len(word), limit)]
    while True:
        over = {i for i, n in enumerate(count(spans)) if n > limit and len(spans[i]) > 1}
        if not over:
            return spans
        spans = [half for i, s in enumerate(spans)
                 for half in ((s[: len(s) // 2], s[len(s) // 2:]) if i in over else (s,))]


def _pack(units: list[tuple[str, str]], sizes: list[int], limit: int) -> list[str]:
    """Greedily join consecutive units while the sum of their sizes stays within the limit. SentencePiece pieces
    never cross a space, so a sum of sizes is at least the size of the joined text."""
    parts: list[str] = []
    current, size = "", 0
    for (glue, unit), n in zip(units, sizes):
        if current and size + n <= limit:
            current, size = current + glue + unit, size + n
        else:
            if current:
                parts.append(current)
            current, size = unit, n
    if current:
        parts.append(current)
    return parts
