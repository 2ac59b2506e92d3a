"""Normalisation (all splits) and filtering (training split only), one chunk of pairs at a time."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np

from mt.text import normalize

__all__ = ["FILTER_REASONS", "first_occurrences", "length_filter", "normalize_chunk", "pair_hashes"]

FILTER_REASONS = ("empty", "duplicate", "too_long", "length_ratio")


def normalize_chunk(src: list[str], tgt: list[str], counts: Counter) -> tuple[list[str], list[str]]:
    """Normalise training pairs and drop (counting them as ``empty``) those with an empty side."""
    out_src, out_tgt = [], []
    for s, t in zip(src, tgt):
        s, t = normalize(s), normalize(t)
        if s and t:
            out_src.append(s)
            out_tgt.append(t)
        else:
            counts["empty"] += 1
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
