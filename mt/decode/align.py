"""Where a position between two source words lands in the translation: the cut in the output that best separates
the output words aligned to the source words before it from those aligned to the words after it.

The attention the search returns says, for each output piece, how much it looked at each source piece; its
largest weight is the piece's source word. ``places`` turns source word boundaries (0 = before the first word,
n = after the last) into output word boundaries; ``insert`` puts text at those boundaries, glued to the next word
(an opening tag), to the previous word (a closing tag) or standing alone with spaces (a link, a number).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Insertion", "insert", "output_words", "piece_words", "places"]


@dataclass(frozen=True)
class Insertion:
    place: int  # output word boundary: 0 before the first word, n after the last (before final punctuation)
    text: str
    glue: str = ""  # "next" (no space after it), "previous" (no space before it) or "" (spaces around)


def places(boundaries: list[int], n_source_words: int, pieces: list[str], attention: torch.Tensor | None,
           source_pieces: list[str], n_output_words: int) -> tuple[list[int], int]:
    """Source word boundaries -> output word boundaries, and how many went by relative position (no attention
    to go by). ``pieces``: the output's SentencePiece pieces; ``attention``: (len(pieces) or one more for the end
    of sentence, len(source_pieces)) or None. The first and last boundaries map to the output's first and last."""
    words_out = piece_words(pieces)
    source_word = _source_word_of_pieces(pieces, attention, source_pieces)
    out, fallbacks = [], 0
    for k in boundaries:
        if k <= 0:
            out.append(0)
        elif k >= n_source_words:
            out.append(n_output_words)
        elif source_word is None:
            fallbacks += 1
            out.append(round(n_output_words * k / n_source_words))
        else:
            out.append(_cut(words_out, source_word, k, n_output_words))
    return out, fallbacks


def output_words(pieces: list[str], text: str) -> int:
    """How many words the translation has: by its pieces, or by ``text`` where there are none (a joined parts)."""
    return piece_words(pieces)[-1] + 1 if pieces else len(text.split())


def piece_words(pieces: list[str]) -> list[int]:
    """The index of the word each SentencePiece piece belongs to (a piece starting with ▁ starts a word)."""
    words, n = [], -1
    for p in pieces:
        if p.startswith("▁") or n < 0:
            n += 1
        words.append(n)
    return words


def _source_word_of_pieces(pieces: list[str], attention: torch.Tensor | None,
                           source_pieces: list[str]) -> list[int | None] | None:
    """For each output piece, the source word it attends to most (None for punctuation), or None without attention."""
    if attention is None or attention.shape[0] < len(pieces) or attention.shape[1] != len(source_pieces):
        return None
    word_of_source = piece_words(source_pieces)
    best = attention[: len(pieces)].argmax(dim=1).tolist()
    return [None if not any(ch.isalnum() for ch in p) else word_of_source[b] for p, b in zip(pieces, best)]


def _cut(words_out: list[int], source_word: list[int | None], k: int, n_out: int) -> int:
    """The output word boundary with the fewest pieces on the wrong side of source boundary ``k`` (ties: the
    earliest)."""
    best, best_cost = 0, None
    for boundary in range(n_out + 1):
        cost = sum(1 for w, s in zip(words_out, source_word) if s is not None and ((w < boundary) != (s < k)))
        if best_cost is None or cost < best_cost:
            best, best_cost = boundary, cost
    return best


def insert(text: str, insertions: list[Insertion]) -> str:
    """``insertions`` into ``text`` (words separated by single spaces) in their order at each boundary; the last
    boundary is before the text's final punctuation."""
    words = text.split(" ") if text else []
    tail = ""
    if words and words[-1]:
        stem = words[-1].rstrip(".!?。！？…")
        tail, words[-1] = words[-1][len(stem):], stem
        if not stem:
            words.pop()
    at: dict[int, list[Insertion]] = {}
    for item in insertions:
        at.setdefault(max(0, min(item.place, len(words))), []).append(item)
    tokens: list[tuple[str, str]] = []  # (text, glue)
    for i in range(len(words) + 1):
        tokens.extend((x.text, x.glue) for x in at.get(i, []))
        if i < len(words) and words[i]:
            tokens.append((words[i], ""))
    out = ""
    for j, (token, glue) in enumerate(tokens):
        glued = j > 0 and (glue == "previous" or tokens[j - 1][1] == "next")
        out += token if not out or glued else " " + token
    return out + tail
