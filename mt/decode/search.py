"""What greedy and beam search need from a model, declared once, and what they return.

``Seq2Seq`` and ``Ensemble`` implement ``SearchModel``: ``encode`` once per batch, then ``step_top`` once per
output token (``step``, the full distribution, serves ensembles). Search only ever reorders or drops sentences of
the batch (``index_select``) and never looks inside the context or the state, so each model keeps its own structures (``mt.model.decoder.StepContext`` and
``DecoderState``; an ensemble's lists of its members').
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

import torch

from mt.data.tokenizer import BOS_ID, EOS_ID

__all__ = ["Hypothesis", "Reorderable", "SearchModel", "max_lengths", "search_one_each"]

R = TypeVar("R", bound="Reorderable")


class Reorderable(Protocol):
    def index_select(self: R, index: torch.Tensor) -> R:
        """The rows ``index`` (N,) of the batch, in that order (rows may repeat: beam search copies them)."""
        ...


@runtime_checkable
class SearchModel(Protocol):
    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> tuple[Reorderable, Reorderable]:
        """src (B, S), src_lens (B,) -> the context every step reuses, the decoder's initial state."""
        ...

    def step(self, prev: torch.Tensor, state: Reorderable,
             ctx: Reorderable) -> tuple[torch.Tensor, Reorderable, torch.Tensor | None]:
        """prev (B*K,) the last tokens -> log-probabilities (B*K, V), the new state, attention (B*K, S) or None.
        ``prev`` and ``state`` have K consecutive rows per sentence of ``ctx`` (beam search's hypotheses; K = 1
        in greedy search): the context is never copied per hypothesis."""
        ...

    def step_top(self, prev: torch.Tensor, state: Reorderable, ctx: Reorderable,
                 n: int) -> tuple[torch.Tensor, torch.Tensor, Reorderable, torch.Tensor | None]:
        """``step`` for search: only each row's n most likely tokens -> their log-probabilities (B, n) and ids
        (B, n), best first, the new state, attention (B, S) or None."""
        ...


@dataclass
class Hypothesis:
    tokens: list[int]  # without BOS / EOS
    score: float  # what ranks hypotheses: log_prob, divided by the length penalty in beam search
    log_prob: float  # sum of token log-probabilities (EOS included when produced)
    attention: torch.Tensor | None = field(default=None, repr=False)  # (steps, S) or None


def max_lengths(src_lens: torch.Tensor, ratio: float, extra: int) -> torch.Tensor:
    """(B,) -> (B,) maximum number of generated tokens per sentence, EOS included."""
    return (src_lens.float() * ratio).long() + extra


Pick = Callable[[torch.Tensor, Reorderable, Reorderable, torch.Tensor, int],
               tuple[torch.Tensor, torch.Tensor, Reorderable, torch.Tensor | None]]


def search_one_each(model: SearchModel, src: torch.Tensor, src_lens: torch.Tensor, pick: Pick, max_len_ratio: float,
                    max_len_extra: int, return_attention: bool) -> list[Hypothesis]:
    """The loop of a search that keeps one hypothesis per sentence (greedy, sampling): ``pick(prev, state, ctx,
    rows, t)`` continues the live rows -> their tokens (R,), those tokens' log-probabilities (R,), the new state and
    attention (R, S) or None; ``rows`` (R,) says which sentences of the batch they are. A sentence leaves the batch
    at its EOS or maximum length, so the others' steps do not compute its padding (about half the rows of a
    length-sorted Multi30k batch) and its result does not depend on its batch mates. -> one hypothesis per
    sentence, in batch order."""
    ctx, state = model.encode(src, src_lens)
    batch, device = src.shape[0], src.device
    limits = max_lengths(src_lens, max_len_ratio, max_len_extra).to(device)  # (B,)
    steps = int(limits.max())
    tokens = torch.full((batch, steps), EOS_ID, dtype=torch.long, device=device)  # (B, steps)
    scores = torch.zeros(batch, device=device)  # (B,)
    taken = torch.full((batch,), steps, dtype=torch.long, device=device)  # (B,) steps until done, EOS included
    attention = None  # (B, steps, S) once a step gives attention weights
    rows = torch.arange(batch, device=device)  # (R,) the sentences still searching
    prev = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)  # (R,)
    for t in range(steps):
        picked, log_prob, state, weights = pick(prev, state, ctx, rows, t)  # (R,), (R,)
        tokens[rows, t] = picked
        scores[rows] += log_prob.float()
        if return_attention and weights is not None:
            if attention is None:
                attention = torch.zeros(batch, steps, weights.shape[1], device=device)
            attention[rows, t] = weights.float()
        done = (picked == EOS_ID) | (t + 1 >= limits[rows])  # (R,)
        prev = picked
        if bool(done.any()):
            taken[rows[done]] = t + 1
            live = (~done).nonzero().squeeze(1)  # (R',)
            if live.numel() == 0:
                break
            rows, prev = rows[live], picked[live]
            state, ctx = state.index_select(live), ctx.index_select(live)
    return _hypotheses(tokens, taken, scores, attention, src_lens)


def _hypotheses(tokens: torch.Tensor, taken: torch.Tensor, scores: torch.Tensor, attention: torch.Tensor | None,
                src_lens: torch.Tensor) -> list[Hypothesis]:
    """tokens (B, steps), taken (B,) steps until done, EOS included, scores (B,), attention (B, steps, S) or None
    -> one hypothesis per sentence."""
    results = []
    for i, (row, n) in enumerate(zip(tokens.tolist(), taken.tolist())):
        row = row[:n]
        if row and row[-1] == EOS_ID:
            row = row[:-1]
        score = float(scores[i])
        att = None if attention is None else attention[i, :n, : int(src_lens[i])].cpu()
        results.append(Hypothesis(row, score, score, att))
    return results
