"""Normalisation (all splits) and filtering (training split only)."""

from __future__ import annotations

from collections import Counter

from mt.text import normalize

__all__ = ["FILTER_REASONS", "filter_encoded", "normalize_pairs"]

FILTER_REASONS = ("empty", "duplicate", "too_long", "length_ratio")


def normalize_pairs(src: list[str], tgt: list[str], dedup: bool) -> tuple[list[str], list[str], Counter]:
    """Normalise training pairs and drop those with an empty side and (if ``dedup``) exact duplicates."""
    counts: Counter = Counter({reason: 0 for reason in FILTER_REASONS})
    seen: set[tuple[str, str]] = set()
    out_src, out_tgt = [], []
    for s, t in zip(src, tgt):
        s, t = normalize(s), normalize(t)
        if not s or not t:
            counts["empty"] += 1
        elif dedup and (s, t) in seen:
            counts["duplicate"] += 1
        else:
            seen.add((s, t))
            out_src.append(s)
            out_tgt.append(t)
    return out_src, out_tgt, counts


def filter_encoded(
    src_ids: list[list[int]], tgt_ids: list[list[int]], max_tokens: int, max_ratio: float, ratio_min_tokens: int,
    counts: Counter,
) -> list[int]:
    """Indices of encoded training pairs to keep: no side over ``max_tokens`` subwords, and no extreme length
    ratio (longer side over ``max_ratio`` times the shorter, checked once the longer side has ``ratio_min_tokens``:
    short captions legitimately differ by a few tokens)."""
    keep = []
    for i, (s, t) in enumerate(zip(src_ids, tgt_ids)):
        longer, shorter = max(len(s), len(t)), max(min(len(s), len(t)), 1)
        if longer > max_tokens:
            counts["too_long"] += 1
        elif longer >= ratio_min_tokens and longer > max_ratio * shorter:
            counts["length_ratio"] += 1
        else:
            keep.append(i)
    return keep
