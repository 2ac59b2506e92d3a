"""Headlines in capitals or Title Case, translated as the sentence case the model learned from, then re-cased.

A model trained on sentence-case text has rarely seen ``A BROWN DOG IS RUNNING``: its capitals split into unusual
subwords and the translation falls apart. ``uncase`` says how a sentence is cased and gives the sentence-case text
the model reads; ``recase`` puts the translation into the same style.
"""

from __future__ import annotations

__all__ = ["recase", "uncase"]


def uncase(text: str) -> tuple[str, str]:
    """-> (the text the model should read, its style: "upper", "title" or "" for text left as it is). Capitals:
    at least two words and four letters, none of them lower case. Title Case: at least three words with letters,
    each starting with a capital, and some lower-case letters."""
    words = [w for w in text.split() if any(ch.isalpha() for ch in w)]
    letters = [ch for w in words for ch in w if ch.isalpha() and ch.lower() != ch.upper()]  # cased letters
    if len(words) >= 2 and len(letters) >= 4 and all(ch.isupper() for ch in letters):
        return _sentence_case(text), "upper"
    if len(words) >= 3 and all(_first_letter(w).isupper() for w in words) and any(ch.islower() for ch in letters):
        return _sentence_case(text), "title"
    return text, ""


def recase(text: str, style: str) -> str:
    if style == "upper":
        return text.upper()
    if style == "title":
        return " ".join(_capitalize(w) for w in text.split(" "))
    return text


def _first_letter(word: str) -> str:
    return next((ch for ch in word if ch.isalpha()), "")


def _sentence_case(text: str) -> str:
    lowered = text.lower()
    for i, ch in enumerate(lowered):
        if ch.isalpha():
            return lowered[:i] + ch.upper() + lowered[i + 1:]
    return lowered


def _capitalize(word: str) -> str:
    for i, ch in enumerate(word):
        if ch.isalpha():
            return word[:i] + ch.upper() + word[i + 1:]
    return word
