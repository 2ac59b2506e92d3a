"""Batched greedy search: the most likely token at every step (beam search is in ``mt.decode.beam``).

Every sentence's result depends only on that sentence: it leaves the batch when it ends, and the maximum length
is per sentence (``max_len_ratio`` x source length + ``max_len_extra``).
"""

from __future__ import annotations

import torch

from mt.decode.search import Hypothesis, SearchModel, search_one_each

__all__ = ["greedy_search"]


@torch.no_grad()
def greedy_search(model: SearchModel, src: torch.Tensor, src_lens: torch.Tensor, max_len_ratio: float = 1.5,
                  max_len_extra: int = 10, return_attention: bool = False) -> list[Hypothesis]:
    """src: (B, S), src_lens: (B,) -> one hypothesis per sentence, in batch order."""

    def most_likely(prev, state, ctx, rows, t):
        best, ids, state, weights = model.step_top(prev, state, ctx, 1)  # (R, 1) each
        return ids.squeeze(1), best.squeeze(1), state, weights

    return search_one_each(model, src, src_lens, most_likely, max_len_ratio, max_len_extra, return_attention)
