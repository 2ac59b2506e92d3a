"""The n most likely next tokens of each row, with their log-probabilities, from the output layer's inputs.

What search needs from the output layer is a few candidates per row, not the (B, V) log-probabilities: the plain
route (logits, log_softmax, adding the beam scores, top-k over K x V) writes and re-reads four (B, V) fp32 tensors
per step, and on a small machine those passes over memory cost more than the multiply. Here the logits are made
one row block at a time, so a block's (rows, V) logits stay in the cache while its maximum, normaliser and top n
are taken, and only (B, n) leaves.

The scores that search sees are fp32 whatever the decoding precision. With ``decode.candidates=approximate`` the
(rows, V) multiply runs at lower precision, since it only serves to find candidates (a *shortlist*): each row's
``n + CANDIDATE_MARGIN`` largest approximate logits are computed again in fp32, the n best of those are
returned, and the normaliser is the sum over the approximate logits with the candidates' fp32 values swapped in.
Two kinds (``shortlist_for``):
- bf16 decoding: the multiply in bf16;
- fp32 decoding on an x86 CPU: the multiply in int8 (fbgemm's dynamic int8 linear, ``Int8Logits``).
A token outside the shortlist would need ``CANDIDATE_MARGIN`` others to overtake it by rounding (bf16: about
0.03 at a logit of 10; int8: up to 0.3); the tail's rounding moves a log-probability by far less than that. How
often that changes a translation is measured in docs/results.md ("Decoding: approximate candidates").
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["Bf16Logits", "Int8Logits", "shortlist_for", "top_log_probs"]

BLOCK_ROWS = 128  # (128, 8,000) fp32 logits = 4 MB: stays in the cache
CANDIDATE_MARGIN = 8  # shortlist: n + 8 candidates per row, rescored in fp32 ...
MIN_CANDIDATES = 10  # ... and never fewer: greedy (n = 1) and beam 1 (n = 2) then share candidates and scores
MAX_CANDIDATES = 64  # beyond that (e.g. sampling from the whole vocabulary) the fp32 multiply is the cheaper route


class Bf16Logits:
    """Approximate logits from a bf16 copy of the output weight (V, E)."""

    def __init__(self, weight: torch.Tensor):
        self.weight = weight.to(torch.bfloat16)
        self.low: torch.Tensor | None = None  # (block, V) bf16 products, reused by every block of one search

    def __call__(self, xs: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """xs (b, E) fp32 -> (b, V) fp32 approximate logits, written into ``out`` (b, V)."""
        if self.low is None or self.low.shape[0] < xs.shape[0]:
            self.low = out.new_empty(out.shape, dtype=torch.bfloat16)
        return out.copy_(torch.mm(xs.to(torch.bfloat16), self.weight.t(), out=self.low[:xs.shape[0]]))


class Int8Logits:
    """Approximate logits from the output weight (V, E) in int8, one scale per row, by fbgemm's dynamic int8
    linear, which quantises its inputs to 7 bits with one range per call. Each row is scaled to a largest
    magnitude of 1 and two constant rows (+1 and -1) pin that range to [-1, 1]: every row gets all 7 bits, and
    its approximate logits (integer sums, exact) do not depend on the other rows of its block or batch."""

    def __init__(self, weight: torch.Tensor):
        weight = weight.detach().float()
        scales = (weight.abs().amax(dim=1) / 127).clamp_min(1e-12).double()  # (V,)
        zeros = torch.zeros(weight.shape[0], dtype=torch.long)
        with warnings.catch_warnings():  # quantized tensors are deprecated in torch; fbgemm's kernels still run
            warnings.simplefilter("ignore")
            q = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(q, None)
        self.pins = torch.zeros(2, weight.shape[1])  # (2, E)
        self.pins[:, 0] = torch.tensor([1.0, -1.0])

    def __call__(self, xs: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """xs (b, E) fp32 -> (b, V) fp32 approximate logits (a new tensor; ``out`` is not needed)."""
        size = xs.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)  # (b, 1)
        pinned = torch.cat([xs / size, self.pins])  # (b + 2, E), every entry within [-1, 1]
        return torch.ops.quantized.linear_dynamic(pinned, self.packed, True)[:-2].mul_(size)  # (b, V)


def shortlist_for(weight: torch.Tensor, dtype: torch.dtype) -> Bf16Logits | Int8Logits | None:
    """The shortlist for search with the output weight (V, E) on the CPU in ``dtype`` (the decoding precision),
    or None where there is none: a GPU, or int8 kernels missing (fbgemm is x86 only). Making the int8 copy costs
    about as much as a few search steps: the caller keeps it while the weight does not change."""
    if weight.device.type != "cpu":
        return None
    if dtype == torch.bfloat16:
        return Bf16Logits(weight)
    if dtype != torch.float32 or torch.backends.quantized.engine not in ("x86", "fbgemm"):
        return None
    return Int8Logits(weight)


def top_log_probs(x: torch.Tensor, weight: torch.Tensor, n: int, block_rows: int = BLOCK_ROWS,
                  shortlist: Bf16Logits | Int8Logits | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (B, E) the output layer's inputs, weight: (V, E) -> log-probabilities (B, n) and token ids (B, n) of
    each row's n most likely tokens, best first. shortlist: approximate logits to pick candidates from."""
    x, weight = x.float(), weight.float()
    rows, vocab = x.shape[0], weight.shape[0]
    n = min(n, vocab)
    candidates = min(max(n + CANDIDATE_MARGIN, MIN_CANDIDATES), vocab)
    if candidates > MAX_CANDIDATES or candidates == vocab:
        shortlist = None  # the whole vocabulary, or nearly: the fp32 multiply
    values = x.new_empty(rows, n)
    ids = torch.empty(rows, n, dtype=torch.long, device=x.device)
    buf = x.new_empty(min(block_rows, rows), vocab)  # one (block, V) fp32 buffer reused by every block
    for start in range(0, rows, block_rows):
        xs = x[start:start + block_rows]  # (b, E)
        b = xs.shape[0]
        if shortlist is None:
            logits = torch.mm(xs, weight.t(), out=buf[:b])  # (b, V)
            top, top_ids = logits.topk(n, dim=1)  # (b, n): the largest logits are the largest log-probabilities
            peak = top[:, :1]  # (b, 1) each row's maximum
            norm = logits.sub_(peak).exp_().sum(dim=1, keepdim=True).log_()  # (b, 1): log sum exp(z - max)
        else:
            top, top_ids, peak, norm = _shortlisted(xs, weight, shortlist(xs, buf[:b]), n, candidates)
        values[start:start + b] = top - peak - norm
        ids[start:start + b] = top_ids
    return values, ids


def _shortlisted(xs: torch.Tensor, weight: torch.Tensor, logits: torch.Tensor, n: int, candidates: int):
    """One block whose approximate logits (b, V) are given (module docstring): its ``candidates`` best are
    rescored in fp32 -> the n best fp32 logits (b, n), their ids, each row's peak (b, 1) and log sum exp(z -
    peak). ``logits`` is overwritten."""
    approx, cand = logits.topk(candidates, dim=1)  # (b, C) the candidates, by their approximate logits
    rows = weight.index_select(0, cand.view(-1)).view(xs.shape[0], candidates, -1)  # (b, C, E) their weights
    exact = torch.bmm(rows, xs.unsqueeze(2)).squeeze(2)  # (b, C): their fp32 logits
    peak = exact.amax(dim=1, keepdim=True)  # (b, 1)
    total = logits.sub_(peak).exp_().sum(dim=1, keepdim=True)  # (b, 1): sum exp(z - peak), approximate z
    total += (exact - peak).exp().sum(dim=1, keepdim=True) - (approx - peak).exp().sum(dim=1, keepdim=True)
    top, order = exact.topk(n, dim=1)  # (b, n)
    return top, cand.gather(1, order), peak, total.log()
