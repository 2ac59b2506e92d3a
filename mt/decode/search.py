"""What greedy and beam search need from a model, declared once, and what they return.

``Seq2Seq`` and ``Ensemble`` implement ``SearchModel``: ``encode`` once per batch, then ``step_top`` once per
output token (``step``, the full distribution, serves ensembles). Search only ever reorders or drops sentences of
the batch (``index_select``) and never looks inside the context or the state, so each model keeps its own structures (``mt.model.decoder.StepContext`` and
``DecoderState``; an ensemble's lists of its members').
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

import torch

from mt.data.tokenizer import EOS_ID

__all__ = ["Hypothesis", "Reorderable", "SearchModel", "max_lengths", "step_hypotheses"]

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


def step_hypotheses(tokens: list[torch.Tensor], steps_taken: torch.Tensor, scores: torch.Tensor,
                    attentions: list[torch.Tensor], src_lens: torch.Tensor) -> list[Hypothesis]:
    """What a one-hypothesis-per-sentence search (greedy, sampling) collected step by step -> one hypothesis per
    sentence. tokens: one (B,) tensor per step; steps_taken (B,): steps until done, EOS included; scores (B,);
    attentions: one (B, S) tensor per step, or none."""
    rows = torch.stack(tokens, dim=1).tolist()  # (B, steps)
    att = torch.stack(attentions, dim=1) if attentions else None  # (B, steps, S)
    results = []
    for i, (row, taken) in enumerate(zip(rows, steps_taken.tolist())):
        row = row[:taken]
        if row and row[-1] == EOS_ID:
            row = row[:-1]
        score = float(scores[i])
        attention = None if att is None else att[i, :taken, : int(src_lens[i])].cpu()
        results.append(Hypothesis(row, score, score, attention))
    return results
