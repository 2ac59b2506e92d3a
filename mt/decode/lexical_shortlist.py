"""Decoding with a lexical shortlist (``decode.lexical_shortlist``): each sentence's output layer scores only the
target subwords its source subwords are likely to produce (``mt.data.lexicon``), the most frequent ones, EOS and
UNK, and its softmax is taken over those alone, as in Marian. This is an approximation on purpose: a word outside
the list cannot be produced, and the probabilities of the others are renormalised over the list. How often it
changes a translation, and what it saves, is measured in docs/results.md ("Lexical shortlist").

The output layer is multiplied once per step for the whole batch, with the union of its sentences' lists (C ids);
each sentence's logits outside its own list are masked, so a translation does not depend on its batch mates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mt.data.lexicon import Lexicon

__all__ = ["LexicallyShortlisted", "can_shortlist"]


def can_shortlist(model: nn.Module) -> bool:
    """Whether ``model`` gives its output layer's inputs (``step_vectors``) and has a plain output layer: a single
    model, not an ensemble or an int8-quantised output layer."""
    return hasattr(model, "step_vectors") and type(getattr(model, "output_layer", None)) is nn.Linear


@dataclass
class _Context:
    inner: object  # the model's own step context
    allowed: torch.Tensor  # (B, C) bool: which of the batch's candidates are each sentence's

    def index_select(self, index: torch.Tensor) -> _Context:
        return _Context(self.inner.index_select(index), self.allowed.index_select(0, index))


class LexicallyShortlisted:
    """A ``SearchModel`` for one batch: ``model`` restricted to the lexicon's candidates of the batch's sources."""

    def __init__(self, model: nn.Module, lexicon: Lexicon, words: int, frequent: int):
        self.model, self.lexicon, self.words, self.frequent = model, lexicon, words, frequent
        self.ids: torch.Tensor | None = None  # (C,) the batch's candidate target ids, sorted
        self.weight: torch.Tensor | None = None  # (C, H or E) their rows of the output layer, fp32

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> tuple[_Context, object]:
        ids, allowed = self.lexicon.candidates(src, src_lens, self.words, self.frequent)  # (C,), (B, C)
        device = src.device
        self.ids = ids.to(device)
        self.weight = self.model.output_layer.weight.detach().float().index_select(0, self.ids)  # (C, H or E)
        ctx, state = self.model.encode(src, src_lens)
        return _Context(ctx, allowed.to(device)), state

    def step(self, prev: torch.Tensor, state, ctx: _Context):
        raise NotImplementedError("a lexical shortlist serves greedy and beam search (step_top)")

    def step_top(self, prev: torch.Tensor, state, ctx: _Context, n: int):
        """prev (R,) -> log-probabilities (R, n) and ids (R, n) of each row's n most likely candidates, best first,
        the new state, attention (R, S) or None. R = K rows per sentence of ``ctx`` (beam search's hypotheses)."""
        vectors, state, weights = self.model.step_vectors(prev, state, ctx.inner)  # (R, H or E)
        with torch.autocast(vectors.device.type, enabled=False):
            logits = torch.mm(vectors.float(), self.weight.t())  # (R, C) fp32
        allowed = ctx.allowed.repeat_interleave(prev.shape[0] // ctx.allowed.shape[0], dim=0)  # (R, C)
        log_probs = torch.log_softmax(logits.masked_fill_(~allowed, float("-inf")), dim=1)
        top, where = log_probs.topk(min(n, log_probs.shape[1]), dim=1)  # (R, n)
        return top, self.ids[where], state, weights
