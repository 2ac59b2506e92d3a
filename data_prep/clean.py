"""Normalisation (all splits) and filtering (training split only), one chunk of pairs at a time."""

from __future__ import annotations

import hashlib
import re
from collections import Counter

import numpy as np

from mt.config import DataConfig
from mt.text import normalize

__all__ = ["FILTER_REASONS", "PairFilter", "first_occurrences", "language_identifier", "length_filter",
           "normalize_chunk", "pair_hashes"]

FILTER_REASONS = ("empty", "copy", "numbers", "language", "duplicate", "too_long", "length_ratio")
LANGUAGE_CONFIDENCE = 0.9  # a side is in another language only where py3langid is this sure (short lines are hard)
_NUMBER = re.compile(r"\d+")


class PairFilter:
    """What a training pair is dropped for beyond an empty side (``data.filter_copies``, ``data.filter_numbers``,
    ``data.filter_language``): the source copied as the target; numbers on both sides with none in common (a
    misaligned pair; digits against words, "2" / "zwei", stay); a side that ``py3langid`` (its model ships in the
    package) says is in another language than the declared one."""

    def __init__(self, data_cfg: DataConfig):
        self.copies, self.numbers = data_cfg.filter_copies, data_cfg.filter_numbers
        self.languages = (data_cfg.src, data_cfg.tgt) if data_cfg.filter_language else None
        self.identify = language_identifier() if self.languages else None

    def reason(self, src: str, tgt: str) -> str | None:
        if self.copies and src == tgt:
            return "copy"
        if self.numbers:
            a, b = set(_NUMBER.findall(src)), set(_NUMBER.findall(tgt))
            if a and b and not a & b:
                return "numbers"
        if self.identify is not None:
            for text, language in zip((src, tgt), self.languages):
                found, confidence = self.identify.classify(text)
                if found != language and confidence >= LANGUAGE_CONFIDENCE:
                    return "language"
        return None


def language_identifier():
    """py3langid's identifier with normalised probabilities (its model ships inside the package: nothing downloads).
    ``classify(text)`` -> (language, confidence); ``rank(text)`` -> [(language, probability)], most likely first."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def normalize_chunk(src: list[str], tgt: list[str], counts: Counter,
                    pair_filter: PairFilter | None = None) -> tuple[list[str], list[str]]:
    """Normalise training pairs and drop (counting them by reason) those with an empty side and those
    ``pair_filter`` gives a reason for."""
    out_src, out_tgt = [], []
    for s, t in zip(src, tgt):
        s, t = normalize(s), normalize(t)
        reason = "empty" if not (s and t) else pair_filter.reason(s, t) if pair_filter else None
        if reason:
            counts[reason] += 1
        else:
            out_src.append(s)
            out_tgt.append(t)
    return out_src, out_tgt


def pair_hashes(src: list[str], tgt: list[str]) -> np.ndarray:
    """A 64-bit hash of each normalised pair, (N,) uint64: duplicates are found by hash, without keeping the
    strings (4M pairs take 32 MB). The tab cannot occur inside a normalised sentence, so it separates the sides."""
    digests = b"".join(hashlib.blake2b(f"{s}\t{t}".encode(), digest_size=8).digest() for s, t in zip(src, tgt))
    return np.frombuffer(digests, dtype="<u8")


def first_occurrences(hashes: np.ndarray) -> np.ndarray:
    """(N,) bool: True for the first pair with each hash, False for later copies (exact duplicates)."""
    keep = np.zeros(len(hashes), dtype=bool)
    keep[np.unique(hashes, return_index=True)[1]] = True  # return_index sorts stably: the first occurrence
    return keep


def length_filter(
    src_lengths: np.ndarray, tgt_lengths: np.ndarray, max_tokens: int, max_ratio: float, ratio_min_tokens: int,
    counts: Counter,
) -> np.ndarray:
    """(N,) bool, the encoded training pairs to keep: no side over ``max_tokens`` subwords, and no extreme length
    ratio (longer side over ``max_ratio`` times the shorter, checked once the longer side has ``ratio_min_tokens``:
    short captions legitimately differ by a few tokens). Counts ``too_long`` and ``length_ratio``."""
    longer = np.maximum(src_lengths, tgt_lengths)
    shorter = np.maximum(np.minimum(src_lengths, tgt_lengths), 1)
    too_long = longer > max_tokens
    bad_ratio = ~too_long & (longer >= ratio_min_tokens) & (longer > max_ratio * shorter)
    counts["too_long"] += int(too_long.sum())
    counts["length_ratio"] += int(bad_ratio.sum())
    return ~(too_long | bad_ratio)
