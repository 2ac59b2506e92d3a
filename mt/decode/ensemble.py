"""Ensemble decoding: several translators of the same vocabulary predict together.

At each step the members' next-token distributions are averaged (in probability space: log of the mean of
the probabilities), the usual way to ensemble NMT models (e.g. Sutskever et al. 2014; Sennrich et al. 2016).
``Ensemble`` implements ``mt.decode.search.SearchModel`` like ``Seq2Seq``, so greedy and beam search run on it
unchanged; the attention it returns is the members' mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mt.model import Seq2Seq

__all__ = ["Ensemble"]


@dataclass
class _PerMember:
    """One context or state per member; search reorders them all alike (``mt.decode.search.Reorderable``)."""
    members: list

    def index_select(self, index: torch.Tensor) -> _PerMember:
        return _PerMember([m.index_select(index) for m in self.members])


class Ensemble(nn.Module):
    def __init__(self, models: list[Seq2Seq]):
        super().__init__()
        vocab = {m.decoder.output.out_features for m in models}
        if len(vocab) != 1:
            raise ValueError(f"ensemble members have different target vocabularies: {sorted(vocab)}")
        self.models = nn.ModuleList(models)

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> tuple[_PerMember, _PerMember]:
        pairs = [m.encode(src, src_lens) for m in self.models]
        return _PerMember([c for c, _ in pairs]), _PerMember([s for _, s in pairs])

    def step(self, prev: torch.Tensor, state: _PerMember, ctx: _PerMember):
        """prev: (B,) -> averaged log-probabilities (B, V), new states, mean attention (B, S) or None."""
        log_probs, states, weights = [], [], []
        for model, s, c in zip(self.models, state.members, ctx.members):
            lp, s, w = model.step(prev, s, c)  # (B, V)
            log_probs.append(lp)
            states.append(s)
            if w is not None:
                weights.append(w)
        mixed = torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(log_probs))  # (B, V)
        attention = torch.stack(weights).mean(dim=0) if weights else None  # (B, S)
        return mixed, _PerMember(states), attention

    def step_top(self, prev: torch.Tensor, state: _PerMember, ctx: _PerMember, n: int):
        """prev: (B,) -> the n best continuations of the averaged distribution: log-probabilities (B, n), ids
        (B, n), new states, mean attention (B, S) or None."""
        mixed, states, attention = self.step(prev, state, ctx)
        return (*mixed.topk(min(n, mixed.shape[1]), dim=1), states, attention)

    def num_parameters(self) -> int:
        return sum(m.num_parameters() for m in self.models)
