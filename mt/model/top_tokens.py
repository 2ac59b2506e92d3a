"""The n most likely next tokens of each row, with their log-probabilities, from the output layer's inputs.

What search needs from the output layer is a few candidates per row, not the (B, V) log-probabilities: the plain
route (logits, log_softmax, adding the beam scores, top-k over K x V) writes and re-reads four (B, V) fp32 tensors
per step, 59 MB each for 1,845 beam rows and 8,000 pieces, and on a 2-core machine those passes over memory cost
more than the multiply. Here the logits are made one row block at a time, so a block's (rows, V) logits stay in
the cache while its maximum, normaliser and top n are taken, and only (B, n) leaves. The logits are fp32 from fp32
inputs whatever the decoding precision (bf16 logits cost 0.1-0.2 BLEU: docs/results.md, "Decoding precision"),
and each row's numbers are those of ``log_softmax(x @ weight.T).topk(n)`` up to the order of fp32 sums.
"""

from __future__ import annotations

import torch

__all__ = ["top_log_probs"]

BLOCK_ROWS = 128  # (128, 8,000) fp32 logits = 4 MB: 2.1x the speed of the plain route (Xeon AMX, 2 threads)


def top_log_probs(x: torch.Tensor, weight: torch.Tensor, n: int,
                  block_rows: int = BLOCK_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (B, E) the output layer's inputs, weight: (V, E) -> log-probabilities (B, n) and token ids (B, n) of
    each row's n most likely tokens, best first."""
    x, weight = x.float(), weight.float()
    rows, vocab = x.shape[0], weight.shape[0]
    n = min(n, vocab)
    values = x.new_empty(rows, n)
    ids = torch.empty(rows, n, dtype=torch.long, device=x.device)
    buf = x.new_empty(min(block_rows, rows), vocab)  # one (block, V) buffer reused by every block
    for start in range(0, rows, block_rows):
        xs = x[start:start + block_rows]  # (b, E)
        logits = torch.mm(xs, weight.t(), out=buf[: xs.shape[0]])  # (b, V)
        top, top_ids = logits.topk(n, dim=1)  # (b, n): the largest logits are the largest log-probabilities
        peak = top[:, :1]  # (b, 1) each row's maximum
        norm = logits.sub_(peak).exp_().sum(dim=1, keepdim=True).log_()  # (b, 1): log sum exp(z - max)
        values[start:start + xs.shape[0]] = top - peak - norm
        ids[start:start + xs.shape[0]] = top_ids
    return values, ids
