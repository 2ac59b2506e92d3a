"""Attention over the encoder states, with source padding masked out.

Each module has two calls: ``keys(states)`` once per sentence (work that does not depend on the decoder step),
then ``forward(query, keys, states, mask)`` at every step. The query may hold K rows per sentence (beam search's
K hypotheses, consecutive): keys, states and mask stay one per sentence and are shared by its K rows, never
copied per hypothesis.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BahdanauAttention", "LuongAttention", "NoAttention", "build_attention", "masked_softmax"]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """scores (..., S), mask broadcastable to them -> weights (..., S), exactly zero at padding, rows summing to 1."""
    return torch.softmax(scores.masked_fill(~mask, torch.finfo(scores.dtype).min), dim=-1)


class BahdanauAttention(nn.Module):
    """Additive attention (Bahdanau et al. 2015): score(q, k) = v^T tanh(W_q q + W_k k)."""

    def __init__(self, query_dim: int, key_dim: int, attention_dim: int):
        super().__init__()
        self.key_layer = nn.Linear(key_dim, attention_dim, bias=False)
        self.query_layer = nn.Linear(query_dim, attention_dim, bias=False)
        self.energy = nn.Linear(attention_dim, 1, bias=False)  # v

    def keys(self, states: torch.Tensor) -> torch.Tensor:
        return self.key_layer(states)  # (B, S, A): W_k k, once per sentence

    def forward(self, query: torch.Tensor, keys: torch.Tensor, states: torch.Tensor, mask: torch.Tensor):
        """query (B*K, H), keys (B, S, A), states (B, S, H), mask (B, S) -> context (B*K, H), weights (B*K, S)."""
        batch, _, att_dim = keys.shape
        q = self.query_layer(query).view(batch, -1, 1, att_dim)  # (B, K, 1, A)
        scores = self.energy(torch.tanh(keys.unsqueeze(1) + q)).squeeze(3)  # (B, K, S)
        weights = masked_softmax(scores, mask.unsqueeze(1))  # (B, K, S)
        context = torch.bmm(weights, states)  # (B, K, H): the weighted mean of the encoder states
        return context.flatten(0, 1), weights.flatten(0, 1)


class LuongAttention(nn.Module):
    """Multiplicative "general" attention (Luong et al. 2015): score(q, k) = q^T W k.

    The query is projected rather than the keys (q^T W k = (W^T q)^T k), which is cheaper per step."""

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        self.query_layer = nn.Linear(query_dim, key_dim, bias=False)

    def keys(self, states: torch.Tensor) -> torch.Tensor:
        return states  # (B, S, H)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, states: torch.Tensor, mask: torch.Tensor):
        """query (B*K, H), keys and states (B, S, H), mask (B, S) -> context (B*K, H), weights (B*K, S)."""
        q = self.query_layer(query).view(keys.shape[0], -1, keys.shape[2])  # (B, K, H)
        scores = torch.bmm(q, keys.transpose(1, 2))  # (B, K, S)
        weights = masked_softmax(scores, mask.unsqueeze(1))  # (B, K, S)
        context = torch.bmm(weights, states)  # (B, K, H)
        return context.flatten(0, 1), weights.flatten(0, 1)


class NoAttention(nn.Module):
    """No attention: the classic encoder-decoder (Cho et al. 2014; Sutskever et al. 2014). Every step sees the
    same sentence vector, the encoder's final state (forward and backward concatenated) instead of a context."""

    def keys(self, states: torch.Tensor) -> torch.Tensor:
        return states[:, :0]  # (B, 0, H): nothing to precompute

    def forward(self, query: torch.Tensor, keys: torch.Tensor, states: torch.Tensor, mask: torch.Tensor):
        raise RuntimeError("NoAttention has no per-step computation; the decoder uses the sentence vector")


def build_attention(kind: str, hidden_dim: int) -> nn.Module:
    if kind == "bahdanau":
        return BahdanauAttention(hidden_dim, hidden_dim, hidden_dim)
    if kind == "luong":
        return LuongAttention(hidden_dim, hidden_dim)
    return NoAttention()
