"""Additive attention scores for search, a block of sentences at a time (``mt.model.attention.BahdanauAttention``
computes the same scores for the whole batch at once).

The energies (B, K, S, A) of a whole search batch are tens of MB, and each element-wise pass over them goes to
memory; here they are made a block of sentences at a time in one reused buffer that stays in the cache for the
add, the tanh and the product with v. In fp32 the tanh goes through sigmoid with its affine parts folded away
(``mt.fast.activations.half_tanh_of_sum``, which the fused training loop shares): one pass instead of four.
"""

from __future__ import annotations

import torch

from mt.fast.activations import half_tanh_of_sum, uses_torch_tanh

__all__ = ["ENERGY_BLOCK_BYTES", "search_scores"]

ENERGY_BLOCK_BYTES = 8 << 20  # the (b, K, S, A) energies of one block of sentences: 8 MB


def search_scores(keys: torch.Tensor, q: torch.Tensor, v: torch.Tensor,
                  block_bytes: int = ENERGY_BLOCK_BYTES) -> torch.Tensor:
    """keys (B, S, A), q (B, K, 1, A), v (A,) -> v^T tanh(keys + q) + c (B, K, S), c a constant per (sentence,
    row). For search, where autograd is off."""
    batch, k, _, att_dim = q.shape
    src_len = keys.shape[1]
    block = max(1, block_bytes // (k * src_len * att_dim * keys.element_size()))  # sentences per block
    via_sigmoid = not uses_torch_tanh(keys)
    v = (v * 2 if via_sigmoid else v).to(keys.dtype)  # (A,): with the sigmoid, the scores are (2v)^T s
    scores = keys.new_empty(batch, k, src_len)
    buf = keys.new_empty(min(block, batch), k, src_len, att_dim)
    for start in range(0, batch, block):
        b = min(block, batch - start)
        block_keys, block_q = keys[start:start + b].unsqueeze(1), q[start:start + b]  # (b, 1, S, A), (b, K, 1, A)
        if via_sigmoid:  # sigmoid(2q + 2 keys): the query, S times smaller than the keys, is the one doubled
            energy = half_tanh_of_sum(block_q * 2, block_keys, out=buf[:b])  # (b, K, S, A)
        else:
            energy = torch.add(block_keys, block_q, out=buf[:b]).tanh_()
        torch.matmul(energy, v, out=scores[start:start + b])  # (b, K, S)
    return scores
