"""Attention over the encoder states, with source padding masked out.

Each module has two calls: ``keys(states)`` once per sentence (work that does not depend on the decoder
step), then ``forward(query, keys, states, mask)`` at every step. The query may hold K rows per sentence (beam
search's K hypotheses, consecutive): keys, states and mask stay one per sentence and are shared by its K rows,
never copied per hypothesis.
"""

from __future__ import annotations

import torch
from torch import nn

from mt.model import activations
from mt.model.activations import tanh
from mt.model.init import init_linear

__all__ = ["BahdanauAttention", "LuongAttention", "NoAttention", "build_attention"]


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """scores, mask: (B, S) -> weights (B, S), exactly zero at padding, rows summing to one."""
    return torch.softmax(scores.masked_fill(~mask, torch.finfo(scores.dtype).min), dim=-1)


class BahdanauAttention(nn.Module):
    """Additive attention (Bahdanau et al. 2015): score(q, k) = v^T tanh(W_q q + W_k k)."""

    def __init__(self, query_dim: int, key_dim: int, attention_dim: int):
        super().__init__()
        self.key_layer = nn.Linear(key_dim, attention_dim, bias=False)
        self.query_layer = nn.Linear(query_dim, attention_dim, bias=False)
        self.energy = nn.Linear(attention_dim, 1, bias=False)
        for layer in (self.key_layer, self.query_layer, self.energy):
            init_linear(layer)

    def keys(self, states: torch.Tensor) -> torch.Tensor:
        return self.key_layer(states)  # (B, S, A): projected once per sentence

    def forward(self, query: torch.Tensor, keys: torch.Tensor, states: torch.Tensor, mask: torch.Tensor):
        """query (B*K, H), keys (B, S, A), states (B, S, H), mask (B, S) -> context (B*K, H), weights (B*K, S)."""
        batch, src_len, att_dim = keys.shape
        q = self.query_layer(query).view(batch, -1, 1, att_dim)  # (B, K, 1, A)
        if torch.is_grad_enabled() or keys.device.type != "cpu" or type(self.energy) is not nn.Linear:
            scores = self.energy(tanh(keys.unsqueeze(1) + q)).squeeze(3)  # (B, K, S) (int8 layers: this way)
        else:
            scores = search_scores(keys, q, self.energy.weight[0])  # (B, K, S), shifted by a constant per row
        weights = _masked_softmax(scores, mask.unsqueeze(1))  # (B, K, S)
        context = torch.bmm(weights, states)  # (B, K, H)
        return context.flatten(0, 1), weights.flatten(0, 1)


ENERGY_BLOCK_BYTES = 8 << 20  # the (b, K, S, A) energies of one block of sentences: 8 MB


def search_scores(keys: torch.Tensor, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """keys (B, S, A), q (B, K, 1, A), v (A,) -> v^T tanh(keys + q) + c (B, K, S), c a constant per (sentence,
    row), which the softmax over S ignores. For search on the CPU, where autograd is off.

    The energies (B, K, S, A) of a whole search batch are tens of MB (66 MB in fp32 for 460 sentences, K = 5,
    S = 14, A = 512) and each element-wise pass over them went to memory; here they are made a block of sentences
    at a time in one reused buffer that stays in the cache for the add, the tanh and the product with v. In fp32
    the tanh goes through sigmoid (``mt.model.activations``) with its affine parts folded away:
    v^T tanh(x) = 2 v^T sigmoid(2x) - sum(v), and -sum(v) is the constant c: one pass instead of four."""
    batch, k, _, att_dim = q.shape
    src_len = keys.shape[1]
    block = max(1, ENERGY_BLOCK_BYTES // (k * src_len * att_dim * keys.element_size()))  # sentences per block
    via_sigmoid = not activations.uses_torch_tanh(keys)
    v = (v * 2 if via_sigmoid else v).to(keys.dtype)
    scores = keys.new_empty(batch, k, src_len)
    buf = keys.new_empty(min(block, batch), k, src_len, att_dim)
    for start in range(0, batch, block):
        b = min(block, batch - start)
        energy = torch.add(keys[start:start + b].unsqueeze(1), q[start:start + b], out=buf[:b])  # (b, K, S, A)
        energy = energy.mul_(2).sigmoid_() if via_sigmoid else energy.tanh_()
        torch.matmul(energy, v, out=scores[start:start + b])  # (b, K, S)
    return scores


class LuongAttention(nn.Module):
    """Multiplicative "general" attention (Luong et al. 2015): score(q, k) = q^T W k.

    The query is projected rather than the keys (q^T W k = (W^T q)^T k), which is cheaper per step."""

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        self.query_layer = nn.Linear(query_dim, key_dim, bias=False)
        init_linear(self.query_layer)

    def keys(self, states: torch.Tensor) -> torch.Tensor:
        return states  # (B, S, H)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, states: torch.Tensor, mask: torch.Tensor):
        """query (B*K, H), keys and states (B, S, H), mask (B, S) -> context (B*K, H), weights (B*K, S)."""
        q = self.query_layer(query).view(keys.shape[0], -1, keys.shape[2])  # (B, K, H)
        scores = torch.bmm(q, keys.transpose(1, 2))  # (B, K, S)
        weights = _masked_softmax(scores, mask.unsqueeze(1))  # (B, K, S)
        context = torch.bmm(weights, states)  # (B, K, H)
        return context.flatten(0, 1), weights.flatten(0, 1)


class NoAttention(nn.Module):
    """No attention: the classic encoder-decoder (Cho et al. 2014; Sutskever et al. 2014). Every step sees the
    same sentence vector, the encoder's final state (forward and backward concatenated) instead of a context."""

    def keys(self, states: torch.Tensor) -> torch.Tensor:
        return states[:, :0]  # (B, 0, H): nothing to precompute

    def forward(self, query, keys, states, mask, sentence: torch.Tensor | None = None):
        raise RuntimeError("NoAttention has no per-step computation; the decoder uses the sentence vector")


def build_attention(kind: str, hidden_dim: int) -> nn.Module:
    if kind == "bahdanau":
        return BahdanauAttention(hidden_dim, hidden_dim, hidden_dim)
    if kind == "luong":
        return LuongAttention(hidden_dim, hidden_dim)
    return NoAttention()
