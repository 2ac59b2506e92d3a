"""Encoded sentences -> length-bucketed, token-budget batches of padded tensors.

Sorting by length before cutting batches keeps padding small (Joey NMT's unsorted batches spend a large part
of their compute on padding); shuffling the batch order each epoch keeps training stochastic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from mt.tokenizer import BOS_ID, EOS_ID, PAD_ID

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


def make_batches(src_lens: list[int], tgt_lens: list[int] | None, batch_tokens: int, shuffle: bool = False,
                 seed: int = 0) -> list[list[int]]:
    """Group sentence indices into batches of at most ``batch_tokens`` padded tokens.

    The budget counts the longer padded side: rows x (max target length + 1) when targets are given, else
    rows x max source length. With ``shuffle``, equal lengths are ordered randomly and the batch order is
    shuffled (both from ``seed``); otherwise the result is deterministic, longest batches first.
    """
    rng = random.Random(seed)
    n = len(src_lens)
    noise = [rng.random() for _ in range(n)] if shuffle else [0.0] * n
    size = (lambda i: max(tgt_lens[i] + 1, src_lens[i])) if tgt_lens is not None else (lambda i: max(src_lens[i], 1))
    order = sorted(range(n), key=lambda i: (size(i), src_lens[i], noise[i], i))
    batches, current, longest = [], [], 0
    for i in order:
        longest_if = max(longest, size(i))
        if current and longest_if * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest_if = [], size(i)
        current.append(i)
        longest = longest_if
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    else:
        batches.reverse()
    return batches
