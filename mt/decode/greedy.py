"""Batched greedy search: the most likely token at every step (beam search is in ``mt.decode.beam``).

Every sentence's result depends only on that sentence: finished rows are padded, never re-scored, and the
maximum length is per sentence (``max_len_ratio`` x source length + ``max_len_extra``).
"""

from __future__ import annotations

import torch

from mt.data.tokenizer import BOS_ID, EOS_ID
from mt.decode.search import Hypothesis, SearchModel, max_lengths, step_hypotheses

__all__ = ["greedy_search"]


@torch.no_grad()
def greedy_search(model: SearchModel, src: torch.Tensor, src_lens: torch.Tensor, max_len_ratio: float = 1.5,
                  max_len_extra: int = 10, return_attention: bool = False) -> list[Hypothesis]:
    """src: (B, S), src_lens: (B,) -> one hypothesis per sentence, in batch order."""
    ctx, state = model.encode(src, src_lens)
    batch = src.shape[0]
    limits = max_lengths(src_lens, max_len_ratio, max_len_extra).to(src.device)  # (B,)
    prev = torch.full((batch,), BOS_ID, dtype=torch.long, device=src.device)
    done = torch.zeros(batch, dtype=torch.bool, device=src.device)
    tokens, scores, attentions = [], torch.zeros(batch, device=src.device), []
    steps_taken = torch.zeros(batch, dtype=torch.long, device=src.device)  # (B,) steps until done, EOS included
    for t in range(int(limits.max())):
        best, prev, state, weights = model.step_top(prev, state, ctx, 1)  # (B, 1) each
        best, prev = best.squeeze(1), prev.squeeze(1)  # (B,)
        scores += best.masked_fill(done, 0.0)
        tokens.append(prev.masked_fill(done, EOS_ID))
        if return_attention and weights is not None:
            attentions.append(weights)
        steps_taken += (~done).long()
        done |= (prev == EOS_ID) | (t + 1 >= limits)
        if bool(done.all()):
            break
    return step_hypotheses(tokens, steps_taken, scores, attentions, src_lens)
