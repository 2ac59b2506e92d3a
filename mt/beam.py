"""Batched beam search: K hypotheses per sentence for a whole batch at once.

Each step scores K x V continuations per sentence and keeps the 2K best: EOS continuations ranked within the
top K are finished and set aside, the K best others stay alive (as in fairseq). Finished hypotheses are ranked
by log-probability divided by the length penalty of Wu et al. (2016), lp(n) = ((5 + n) / 6) ** alpha, plus
their coverage penalty cp = beta * sum_i log(min(attention received by source position i, 1)) when
``coverage`` (beta) > 0: a hypothesis that leaves source words unattended ranks lower.
A sentence is done when it has K finished hypotheses, when no alive hypothesis can still beat its n-th best
finished one, or at its maximum length. Done sentences leave the batch, so the others decode faster and no
sentence's result depends on its batch mates. With K = 1 this is exactly greedy search.
"""

from __future__ import annotations

import torch

from mt.decoding import Hypothesis, SearchModel, max_lengths
from mt.tokenizer import BOS_ID, EOS_ID

__all__ = ["beam_search", "coverage_penalty", "length_penalty"]

NEG_INF = float("-inf")


def length_penalty(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha


def coverage_penalty(coverage: torch.Tensor, beta: float) -> float:
    """coverage: (S,) attention each real source position received over the hypothesis's steps -> beta * sum_i
    log(min(coverage_i, 1)), at most 0 (Wu et al. 2016; the floor of 1e-9 keeps a never-attended position finite)."""
    return beta * float(coverage.float().clamp(1e-9, 1.0).log().sum())


class _Beams:
    """The live rows of a search: K per active sentence, everything indexed by row (R*K)."""

    def __init__(self, ctx, state, k: int, batch: int, device):
        self.ctx, self.state, self.k = ctx, state, k
        self.sentence = list(range(batch))  # original index of each active sentence
        self.scores = torch.full((batch, k), NEG_INF, device=device)  # (R, K)
        self.scores[:, 0] = 0.0  # one live hypothesis per sentence at the start
        self.tokens = torch.zeros((batch * k, 0), dtype=torch.long, device=device)  # (R*K, t)
        self.attn: torch.Tensor | None = None  # (R*K, t, S)
        self.coverage: torch.Tensor | None = None  # (R*K, S): attention summed over the steps (coverage penalty)
        self.prev = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)  # (R*K,)

    def reorder(self, rows: torch.Tensor, new_tokens: torch.Tensor, step_attn: torch.Tensor | None,
                step_coverage: torch.Tensor | None = None) -> None:
        """Continue row ``rows[i]`` with ``new_tokens[i]``; step_attn: (R*K, S) attention of this step, kept per
        step; step_coverage: (R*K, S) the coverage including this step, kept as the running sum."""
        self.tokens = torch.cat([self.tokens.index_select(0, rows), new_tokens.unsqueeze(1)], 1)  # (R*K, t+1)
        if step_coverage is not None:
            self.coverage = step_coverage.index_select(0, rows)
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
        self.coverage = None if self.coverage is None else self.coverage.index_select(0, rows)
        self.state, self.ctx = self.state.index_select(rows), self.ctx.index_select(rows)


@torch.no_grad()
def beam_search(model: SearchModel, src: torch.Tensor, src_lens: torch.Tensor, beam: int = 5, alpha: float = 1.0,
                max_len_ratio: float = 1.5, max_len_extra: int = 10, nbest: int = 1,
                return_attention: bool = False, coverage: float = 0.0) -> list[list[Hypothesis]]:
    """src: (B, S), src_lens: (B,) -> per sentence its ``nbest`` best hypotheses, best first. ``coverage``: the
    coverage penalty's weight beta (0 = none; models without attention have none)."""
    batch, k = src.shape[0], beam
    nbest = min(nbest, k)
    ctx, state = model.encode(src, src_lens)
    expand = torch.arange(batch, device=src.device).repeat_interleave(k)  # (B*K,)
    beams = _Beams(ctx.index_select(expand), state.index_select(expand), k, batch, src.device)
    limits = max_lengths(src_lens, max_len_ratio, max_len_extra).tolist()
    lengths = src_lens.tolist()
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]

    def finish(s: int, row: int, raw: float, length: int, extra_attn: torch.Tensor | None,
               covered: torch.Tensor | None) -> None:
        """covered: (S,) the attention source positions received, this step included, or None."""
        att = beams.attn[row] if beams.attn is not None else None  # (t, S)
        if extra_attn is not None:
            att = extra_attn.unsqueeze(0) if att is None else torch.cat([att, extra_attn.unsqueeze(0)], 0)
        att = None if att is None else att[:, : lengths[s]].cpu()
        score = raw / length_penalty(length, alpha)
        if covered is not None:
            score += coverage_penalty(covered[: lengths[s]], coverage)
        hyp = Hypothesis(beams.tokens[row].tolist(), score, raw, att)
        finished[s].append(hyp)
        finished[s].sort(key=lambda h: -h.score)

    t = 0
    while beams.sentence:
        active = len(beams.sentence)
        log_probs, beams.state, weights = model.step(beams.prev, beams.state, beams.ctx)  # (R*K, V)
        step_attn = weights if return_attention else None  # (R*K, S) or None
        covered = None  # (R*K, S): attention summed over the steps so far, this one included
        if coverage > 0 and weights is not None:
            covered = weights.float() if beams.coverage is None else beams.coverage + weights.float()
        vocab = log_probs.shape[1]
        cand = (beams.scores.view(-1, 1) + log_probs).view(active, k * vocab)  # (R, K*V)
        top_scores, top_index = cand.topk(min(2 * k, k * vocab), dim=1)  # (R, 2K)
        token = top_index % vocab  # (R, 2K)
        row_of = top_index // vocab + torch.arange(active, device=src.device).unsqueeze(1) * k  # (R, 2K)
        is_eos = token == EOS_ID
        for a, j in (is_eos[:, :k] & (top_scores[:, :k] > NEG_INF)).nonzero().tolist():
            row = int(row_of[a, j])
            finish(beams.sentence[a], row, float(top_scores[a, j]), t + 1,
                   None if step_attn is None else step_attn[row], None if covered is None else covered[row])
        alive, pick = top_scores.masked_fill(is_eos, NEG_INF).topk(k, dim=1)  # (R, K)
        beams.reorder(row_of.gather(1, pick).view(-1), token.gather(1, pick).view(-1), step_attn, covered)
        beams.scores = alive
        t += 1
        still = []
        for a, s in enumerate(beams.sentence):
            best_alive = float(alive[a, 0])
            if t >= limits[s]:  # out of length: if too few finished, the live hypotheses end here
                for j in range(k if len(finished[s]) < nbest else 0):
                    if float(alive[a, j]) > NEG_INF:
                        finish(s, a * k + j, float(alive[a, j]), t, None,
                               None if beams.coverage is None else beams.coverage[a * k + j])
                continue
            # scores only fall as hypotheses grow (the coverage penalty is at most 0)
            best_possible = best_alive / length_penalty(limits[s], alpha)
            enough = len(finished[s]) >= k or (len(finished[s]) >= nbest and finished[s][nbest - 1].score >= best_possible)
            if not enough and best_alive > NEG_INF:
                still.append(a)
        if len(still) < active:
            if not still:
                break
            beams.keep(still)
    return [hyps[:nbest] for hyps in finished]
