"""The n most likely next tokens of each row, with their log-probabilities, from the output layer's inputs.

What search needs from the output layer is a few candidates per row, not the (B, V) log-probabilities: the plain
route (logits, log_softmax, adding the beam scores, top-k over K x V) writes and re-reads four (B, V) fp32 tensors
per step, 59 MB each for 1,845 beam rows and 8,000 pieces, and on a 2-core machine those passes over memory cost
more than the multiply. Here the logits are made one row block at a time, so a block's (rows, V) logits stay in
the cache while its maximum, normaliser and top n are taken, and only (B, n) leaves.

The scores that search sees are fp32 whatever the decoding precision (bf16 logits cost 0.1-0.2 BLEU:
docs/results.md, "Decoding precision"). Given a bf16 copy of the weight (``low_weight``, bf16 decoding), the
(rows, V) multiply runs in bf16, 4x faster than in fp32 on a CPU with AMX, and serves only to find candidates:
each row's ``n + CANDIDATE_MARGIN`` largest bf16 logits are computed again in fp32, the n best of those are
returned, and the normaliser is the sum over the bf16 logits with the candidates' fp32 values swapped in. A
token outside the bf16 shortlist would need ``CANDIDATE_MARGIN`` others to overtake it by bf16 rounding (about
0.03 at a logit of 10); the tail's rounding moves a log-probability by far less than that.
"""

from __future__ import annotations

import torch

__all__ = ["BF16_SHORTLIST", "top_log_probs"]

BF16_SHORTLIST = True  # False: bf16 decoding multiplies in fp32 too (`python -m eval.bench --compare shortlist`)

BLOCK_ROWS = 128  # (128, 8,000) fp32 logits = 4 MB: 2.1x the speed of the plain route (Xeon AMX, 2 threads)
CANDIDATE_MARGIN = 8  # bf16 shortlist: n + 8 candidates per row, rescored in fp32
MAX_CANDIDATES = 64  # beyond that (e.g. sampling from the whole vocabulary) the fp32 multiply is the cheaper route


def top_log_probs(x: torch.Tensor, weight: torch.Tensor, n: int, block_rows: int = BLOCK_ROWS,
                  low_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (B, E) the output layer's inputs, weight: (V, E) -> log-probabilities (B, n) and token ids (B, n) of
    each row's n most likely tokens, best first. low_weight: ``weight`` in bf16, to shortlist in bf16."""
    x, weight = x.float(), weight.float()
    rows, vocab = x.shape[0], weight.shape[0]
    n = min(n, vocab)
    shortlist = min(n + CANDIDATE_MARGIN, vocab)
    if shortlist > MAX_CANDIDATES or shortlist == vocab:
        low_weight = None  # the whole vocabulary, or nearly: the fp32 multiply
    values = x.new_empty(rows, n)
    ids = torch.empty(rows, n, dtype=torch.long, device=x.device)
    buf = x.new_empty(min(block_rows, rows), vocab)  # one (block, V) fp32 buffer reused by every block
    if low_weight is not None:
        x_low = x.to(low_weight.dtype)
        low_buf = buf.new_empty(buf.shape, dtype=low_weight.dtype)  # the same in bf16
    for start in range(0, rows, block_rows):
        xs = x[start:start + block_rows]  # (b, E)
        b = xs.shape[0]
        if low_weight is None:
            logits = torch.mm(xs, weight.t(), out=buf[:b])  # (b, V)
            top, top_ids = logits.topk(n, dim=1)  # (b, n): the largest logits are the largest log-probabilities
            peak = top[:, :1]  # (b, 1) each row's maximum
            norm = logits.sub_(peak).exp_().sum(dim=1, keepdim=True).log_()  # (b, 1): log sum exp(z - max)
        else:
            top, top_ids, peak, norm = _shortlisted(xs, x_low[start:start + b], weight, low_weight, n, shortlist,
                                                    buf[:b], low_buf[:b])
        values[start:start + b] = top - peak - norm
        ids[start:start + b] = top_ids
    return values, ids


def _shortlisted(xs: torch.Tensor, xs_low: torch.Tensor, weight: torch.Tensor, low_weight: torch.Tensor, n: int,
                 shortlist: int, buf: torch.Tensor, low_buf: torch.Tensor):
    """One block with the (b, V) multiply in bf16 and its ``shortlist`` best candidates rescored in fp32 (module
    docstring) -> the n best fp32 logits (b, n), their ids, each row's peak (b, 1) and log sum exp(z - peak)."""
    low = torch.mm(xs_low, low_weight.t(), out=low_buf)  # (b, V) bf16
    logits = buf.copy_(low)  # (b, V) fp32: the bf16 logits, exactly
    approx, cand = logits.topk(shortlist, dim=1)  # (b, C) the candidates, by their bf16 logits
    rows = weight.index_select(0, cand.view(-1)).view(xs.shape[0], shortlist, -1)  # (b, C, E) their weights
    exact = torch.bmm(rows, xs.unsqueeze(2)).squeeze(2)  # (b, C): their fp32 logits
    peak = exact.amax(dim=1, keepdim=True)  # (b, 1)
    total = logits.sub_(peak).exp_().sum(dim=1, keepdim=True)  # (b, 1): sum exp(z - peak), bf16 z
    total += (exact - peak).exp().sum(dim=1, keepdim=True) - (approx - peak).exp().sum(dim=1, keepdim=True)
    top, order = exact.topk(n, dim=1)  # (b, n)
    return top, cand.gather(1, order), peak, total.log()
