"""Sampled translations (``mt translate --sample``): each token drawn from the model's distribution, sharpened or
flattened by a temperature and optionally limited to the ``top_k`` most likely tokens.

The synthetic sources of back-translation are sampled rather than searched (Edunov et al. 2018): beam search
gives the most likely, blandest translation, sampling keeps the variety the model has learnt.

Reproducible by seed whatever the batching: every sentence draws from its own random stream, seeded by
``(seed, line, part)`` (its line in the input and, for a line translated in parts, which part), and each step takes
one uniform number of that stream (inverse-CDF sampling). So a line's sample does not change with the batch it
shares, the chunk size or the timing of a pipe; only bf16 rounding differences between batch shapes can move it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mt.decode.search import Hypothesis, SearchModel, max_lengths, search_one_each
from mt.errors import MTError

__all__ = ["Sampling", "sample_search"]


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0  # < 1 sharper, > 1 flatter; 0 takes the most likely token (greedy search)
    top_k: int = 0  # > 0: draw among the k most likely tokens only; 0: the whole vocabulary
    seed: int = 1

    def __post_init__(self):
        if self.temperature < 0 or self.top_k < 0:
            raise MTError(f"sampling: --temperature ({self.temperature}) and --top-k ({self.top_k}) must be >= 0")


def _uniforms(keys: list[tuple[int, ...]], seed: int, steps: int, device: torch.device) -> torch.Tensor:
    """(B, steps) uniform numbers in [0, 1), row i from the random stream of ``(seed, *keys[i])``."""
    rows = [np.random.default_rng([seed, *key]).random(steps) for key in keys]
    return torch.from_numpy(np.stack(rows)).float().to(device)


@torch.no_grad()
def sample_search(model: SearchModel, src: torch.Tensor, src_lens: torch.Tensor, sampling: Sampling,
                  keys: list[tuple[int, ...]], max_len_ratio: float = 1.5, max_len_extra: int = 10,
                  return_attention: bool = False) -> list[Hypothesis]:
    """src: (B, S), src_lens: (B,), keys: B tuples of non-negative ints naming each sentence's random stream ->
    one sampled hypothesis per sentence, in batch order; its score is the model's log-probability of the sample
    (at temperature 1, whatever the sampling temperature)."""
    steps = int(max_lengths(src_lens, max_len_ratio, max_len_extra).max())
    u = _uniforms(keys, sampling.seed, steps, src.device)  # (B, steps)

    def draw(prev, state, ctx, rows, t):
        if sampling.top_k:
            log_probs, ids, state, weights = model.step_top(prev, state, ctx, sampling.top_k)  # (R, k) each
        else:
            log_probs, state, weights = model.step(prev, state, ctx)  # (R, V)
            ids = None
        log_probs = log_probs.float()
        if sampling.temperature == 0:
            choice = log_probs.argmax(dim=1, keepdim=True)  # (R, 1)
        else:
            cdf = torch.softmax(log_probs / sampling.temperature, dim=1).cumsum(dim=1)  # (R, k or V)
            mine = u[rows, t].unsqueeze(1)  # (R, 1): each sentence's own number for this step
            choice = torch.searchsorted(cdf, mine * cdf[:, -1:]).clamp_(max=cdf.shape[1] - 1)  # (R, 1)
        picked = (choice if ids is None else ids.gather(1, choice)).squeeze(1)  # (R,)
        return picked, log_probs.gather(1, choice).squeeze(1), state, weights

    return search_one_each(model, src, src_lens, draw, max_len_ratio, max_len_extra, return_attention)
