"""Batched beam search: K hypotheses per sentence for a whole batch at once.

Each step scores K x V continuations per sentence and keeps the 2K best: EOS continuations ranked within the
top K are finished and set aside, the K best others stay alive (as in fairseq). Finished hypotheses are ranked
by log-probability divided by the length penalty of Wu et al. (2016), lp(n) = ((5 + n) / 6) ** alpha.
A sentence is done when it has K finished hypotheses, when no alive hypothesis can still beat its n-th best
finished one, or at its maximum length. Done sentences leave the batch, so the others decode faster and no
sentence's result depends on its batch mates. With K = 1 this is exactly greedy search.
"""

from __future__ import annotations

import torch

from mt.data.tokenizer import BOS_ID, EOS_ID
from mt.decode.search import Hypothesis, SearchModel, max_lengths

__all__ = ["beam_search", "length_penalty"]

NEG_INF = float("-inf")


def length_penalty(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha


class _Beams:
    """The live rows of a search: K per active sentence, everything indexed by row (R*K) but the context, which
    has one row per active sentence, shared by its K hypotheses (``mt.model.attention``)."""

    def __init__(self, ctx, state, k: int, batch: int, device):
        self.ctx, self.state, self.k = ctx, state, k
        self.sentence = list(range(batch))  # original index of each active sentence
        self.scores = torch.full((batch, k), NEG_INF, device=device)  # (R, K)
        self.scores[:, 0] = 0.0  # one live hypothesis per sentence at the start
        self.tokens = torch.zeros((batch * k, 0), dtype=torch.long, device=device)  # (R*K, t)
        self.attn: torch.Tensor | None = None  # (R*K, t, S)
        self.prev = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)  # (R*K,)

    def reorder(self, rows: torch.Tensor, new_tokens: torch.Tensor, step_attn: torch.Tensor | None) -> None:
        """Continue row ``rows[i]`` with ``new_tokens[i]``; step_attn: (R*K, S) attention of this step, kept per
        step."""
        self.tokens = torch.cat([self.tokens.index_select(0, rows), new_tokens.unsqueeze(1)], 1)  # (R*K, t+1)
        if step_attn is not None:
            step = step_attn.index_select(0, rows).unsqueeze(1)  # (R*K, 1, S)
            self.attn = step if self.attn is None else torch.cat([self.attn.index_select(0, rows), step], 1)
        self.state, self.prev = self.state.index_select(rows), new_tokens

    def keep(self, active: list[int]) -> None:
        """Drop the sentences that are done: keep active sentences ``active`` (positions among the current)."""
        device = self.scores.device
        index = torch.tensor(active, device=device)
        rows = (index.unsqueeze(1) * self.k + torch.arange(self.k, device=device)).view(-1)  # (R'*K,)
        self.sentence = [self.sentence[a] for a in active]
        self.scores = self.scores.index_select(0, index)
        self.tokens, self.prev = self.tokens.index_select(0, rows), self.prev.index_select(0, rows)
        self.attn = None if self.attn is None else self.attn.index_select(0, rows)
        self.state, self.ctx = self.state.index_select(rows), self.ctx.index_select(index)


class _Finished:
    """Each sentence's finished hypotheses, best first, and when a sentence is done."""

    def __init__(self, batch: int, k: int, nbest: int, alpha: float, limits: list[int], src_lengths: list[int]):
        self.hyps: list[list[Hypothesis]] = [[] for _ in range(batch)]
        self.k, self.nbest, self.alpha, self.limits, self.src_lengths = k, nbest, alpha, limits, src_lengths

    def add(self, beams: _Beams, s: int, row: int, raw: float, length: int, last_attn: torch.Tensor | None) -> None:
        """Sentence ``s`` ends with row ``row`` of ``beams`` (score ``raw``, ``length`` tokens); ``last_attn``: the
        attention (S,) of the step that produced EOS, which the row has not stored."""
        att = beams.attn[row] if beams.attn is not None else None  # (t, S)
        if last_attn is not None:
            att = last_attn.unsqueeze(0) if att is None else torch.cat([att, last_attn.unsqueeze(0)], 0)
        att = None if att is None else att[:, : self.src_lengths[s]].cpu()
        self.hyps[s].append(Hypothesis(beams.tokens[row].tolist(), raw / length_penalty(length, self.alpha), raw, att))
        self.hyps[s].sort(key=lambda h: -h.score)

    def done(self, s: int, best_alive: float) -> bool:
        """Enough finished hypotheses, or none alive could still beat the n-th best (scores only fall as
        hypotheses grow)."""
        found = self.hyps[s]
        best_possible = best_alive / length_penalty(self.limits[s], self.alpha)
        return best_alive == NEG_INF or len(found) >= self.k or (
            len(found) >= self.nbest and found[self.nbest - 1].score >= best_possible)


@torch.no_grad()
def beam_search(model: SearchModel, src: torch.Tensor, src_lens: torch.Tensor, beam: int = 5, alpha: float = 1.0,
                max_len_ratio: float = 1.5, max_len_extra: int = 10, nbest: int = 1,
                return_attention: bool = False) -> list[list[Hypothesis]]:
    """src: (B, S), src_lens: (B,) -> per sentence its ``nbest`` best hypotheses, best first."""
    batch, k = src.shape[0], beam
    nbest = min(nbest, k)
    ctx, state = model.encode(src, src_lens)
    expand = torch.arange(batch, device=src.device).repeat_interleave(k)  # (B*K,)
    beams = _Beams(ctx, state.index_select(expand), k, batch, src.device)  # ctx: one per sentence, not per row
    limits = max_lengths(src_lens, max_len_ratio, max_len_extra).tolist()
    finished = _Finished(batch, k, nbest, alpha, limits, src_lens.tolist())
    t = 0
    while beams.sentence:
        # each row's 2K best continuations hold its sentence's 2K best among all K x V
        values, ids, beams.state, weights = model.step_top(beams.prev, beams.state, beams.ctx, 2 * k)  # (R*K, 2K)
        _advance(beams, finished, values, ids, weights if return_attention else None, t)
        t += 1
        still = [a for a, s in enumerate(beams.sentence) if not _ends_here(beams, finished, a, s, t)]
        if len(still) < len(beams.sentence):
            if not still:
                break
            beams.keep(still)
    return [hyps[:nbest] for hyps in finished.hyps]


def _advance(beams: _Beams, finished: _Finished, values: torch.Tensor, ids: torch.Tensor,
             step_attn: torch.Tensor | None, t: int) -> None:
    """One step of every live row: finish the EOS continuations among each sentence's top K, keep the K best
    others. values, ids: (R*K, C) each row's C best continuations (log-probabilities, token ids); step_attn:
    (R*K, S) or None."""
    active, k = len(beams.sentence), beams.k
    per_row = values.shape[1]
    cand = (beams.scores.view(-1, 1) + values).view(active, k * per_row)  # (R, K*C)
    top_scores, top_index = cand.topk(min(2 * k, k * per_row), dim=1)  # (R, 2K)
    token = ids.view(active, k * per_row).gather(1, top_index)  # (R, 2K)
    row_of = top_index // per_row + torch.arange(active, device=cand.device).unsqueeze(1) * k  # (R, 2K)
    is_eos = token == EOS_ID
    for a, j in (is_eos[:, :k] & (top_scores[:, :k] > NEG_INF)).nonzero().tolist():
        row = int(row_of[a, j])
        finished.add(beams, beams.sentence[a], row, float(top_scores[a, j]), t + 1,
                     None if step_attn is None else step_attn[row])
    alive, pick = top_scores.masked_fill(is_eos, NEG_INF).topk(k, dim=1)  # (R, K)
    beams.reorder(row_of.gather(1, pick).view(-1), token.gather(1, pick).view(-1), step_attn)
    beams.scores = alive


def _ends_here(beams: _Beams, finished: _Finished, a: int, s: int, t: int) -> bool:
    """Whether active sentence ``a`` (original ``s``) is done after ``t`` steps; at its maximum length, its live
    hypotheses end here when it has fewer than n-best finished."""
    if t >= finished.limits[s]:
        for j in range(beams.k if len(finished.hyps[s]) < finished.nbest else 0):
            if float(beams.scores[a, j]) > NEG_INF:
                finished.add(beams, s, a * beams.k + j, float(beams.scores[a, j]), t, None)
        return True
    return finished.done(s, float(beams.scores[a, 0]))
