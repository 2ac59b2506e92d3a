"""Encoded sentences -> length-bucketed, token-budget batches of padded tensors.

Sorting by length before cutting batches keeps padding small (Joey NMT's unsorted batches spend a large part
of their compute on padding); shuffling the batch order each epoch keeps training stochastic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

__all__ = ["Batch", "TextBatch", "collate", "collate_text", "make_batches", "pad", "shifted"]


@dataclass
class Batch:
    src: torch.Tensor  # (B, S) source ids, PAD_ID-padded
    src_lens: torch.Tensor  # (B,)
    tgt_in: torch.Tensor | None  # (B, T) BOS y_1 .. y_n, or None when decoding
    tgt_out: torch.Tensor | None  # (B, T) y_1 .. y_n EOS
    indices: list[int]  # position of each row in the dataset
    n_tokens: int  # real target tokens (EOS included)

    @property
    def model_inputs(self) -> tuple[torch.Tensor, ...]:
        """What ``Seq2Seq.forward`` takes for the teacher-forced pass."""
        return self.src, self.src_lens, self.tgt_in

    @property
    def targets(self) -> torch.Tensor | None:
        return self.tgt_out

    def to(self, device: torch.device) -> Batch:
        move = lambda x: None if x is None else x.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.src), move(self.src_lens), move(self.tgt_in), move(self.tgt_out),
                     self.indices, self.n_tokens)


@dataclass
class TextBatch:
    """A batch of monolingual text for a language model: predict each next token."""
    inputs: torch.Tensor  # (B, T) BOS y_1 .. y_n
    targets: torch.Tensor  # (B, T) y_1 .. y_n EOS
    n_tokens: int  # real targets (EOS included)

    @property
    def model_inputs(self) -> tuple[torch.Tensor, ...]:
        return (self.inputs,)

    def to(self, device: torch.device) -> TextBatch:
        return TextBatch(self.inputs.to(device, non_blocking=True), self.targets.to(device, non_blocking=True),
                         self.n_tokens)


def pad(seqs: list[list[int]], value: int = PAD_ID) -> torch.Tensor:
    """Right-pad to the longest sequence: (B, max_len) long tensor."""
    out = torch.full((len(seqs), max(len(s) for s in seqs)), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def collate(src: list[list[int]], tgt: list[list[int]] | None, indices: list[int], max_src_len: int = 0) -> Batch:
    """Pad one batch. Empty sources become [EOS] so every row has at least one token; ``max_src_len`` (>0)
    truncates long sources."""
    src = [(s[:max_src_len] if max_src_len else s) or [EOS_ID] for s in src]
    lens = torch.tensor([len(s) for s in src], dtype=torch.long)
    if tgt is None:
        return Batch(pad(src), lens, None, None, indices, 0)
    tgt_in, tgt_out, n_tokens = shifted(tgt)
    return Batch(pad(src), lens, tgt_in, tgt_out, indices, n_tokens)


def collate_text(seqs: list[list[int]]) -> TextBatch:
    return TextBatch(*shifted(seqs))


def shifted(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Teacher forcing: -> inputs (B, T) = BOS y_1 .. y_n, targets (B, T) = y_1 .. y_n EOS, and the number of
    real targets (EOS included)."""
    inputs = pad([[BOS_ID, *s] for s in seqs])  # (B, T)
    targets = pad([[*s, EOS_ID] for s in seqs])  # (B, T)
    return inputs, targets, sum(len(s) + 1 for s in seqs)


def make_batches(src_lens, tgt_lens, batch_tokens: int, shuffle: bool = False, seed: int = 0) -> list[list[int]]:
    """Group sentence indices into batches of at most ``batch_tokens`` padded tokens.

    The budget counts the longer padded side: rows x (max target length + 1) when targets are given, else
    rows x max source length. With ``shuffle``, equal lengths are ordered randomly and the batch order is
    shuffled (both from ``seed``); otherwise the result is deterministic, longest batches first. The lengths may
    be lists or numpy arrays; sorting is vectorised and the cutting loop runs once per batch, not per sentence.
    The seeded noise is still drawn with ``random.Random`` (one call per sentence), which keeps the batches
    identical to those of earlier versions.
    """
    rng = random.Random(seed)
    src = np.asarray(src_lens, dtype=np.int64).reshape(-1)  # (N,)
    n = len(src)
    size = np.maximum(np.asarray(tgt_lens, dtype=np.int64) + 1, src) if tgt_lens is not None else np.maximum(src, 1)
    noise = np.fromiter((rng.random() for _ in range(n)), np.float64, n) if shuffle else np.zeros(n)
    # by size, then source length, then noise, then index: stable sorts from the last key to the first
    order = np.argsort(noise, kind="stable")  # (N,)
    length_key = size * (int(src.max(initial=0)) + 1) + src  # (N,) size first, source length second
    order = order[np.argsort(length_key[order], kind="stable")]
    sizes = size[order]  # (N,) ascending: a batch's longest row is its last
    starts, j = [], 0
    while j < n:  # the most rows r from j with sizes[j + r - 1] * r <= batch_tokens (at least one row)
        lo, hi = 1, max(min(n - j, batch_tokens // int(sizes[j])), 1)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if sizes[j + mid - 1] * mid <= batch_tokens else (lo, mid - 1)
        starts.append(j)
        j += lo
    flat = order.tolist()
    batches = [flat[a:b] for a, b in zip(starts, starts[1:] + [n])]
    if shuffle:
        rng.shuffle(batches)
    else:
        batches.reverse()
    return batches
