"""Validation: teacher-forced loss/perplexity and greedy sacreBLEU on a split."""

from __future__ import annotations

import math

import sacrebleu
import torch
import torch.nn.functional as F

from mt.batching import collate, make_batches
from mt.config import DecodeConfig
from mt.model import Seq2Seq
from mt.search import Hypothesis, greedy_search
from mt.tokenizer import PAD_ID

__all__ = ["decode_ids", "validation_loss", "validation_bleu"]


@torch.no_grad()
def validation_loss(model: Seq2Seq, src: list[list[int]], tgt: list[list[int]], batch_tokens: int,
                    device: torch.device) -> tuple[float, float]:
    """Mean per-token cross-entropy (no label smoothing) and perplexity."""
    model.eval()
    total, tokens = 0.0, 0
    for idx in make_batches([len(s) for s in src], [len(t) for t in tgt], batch_tokens):
        b = collate([src[i] for i in idx], [tgt[i] for i in idx], idx).to(device)
        vecs = model(b.src, b.src_lens, b.tgt_in)  # (B, T, H)
        mask = b.tgt_out != PAD_ID  # (B, T)
        logits = model.decoder.output(vecs[mask])  # (N, V)
        total += float(F.cross_entropy(logits.float(), b.tgt_out[mask], reduction="sum"))
        tokens += b.n_tokens
    loss = total / max(tokens, 1)
    return loss, math.exp(min(loss, 100.0))


@torch.no_grad()
def decode_ids(model: Seq2Seq, src: list[list[int]], cfg: DecodeConfig, device: torch.device,
               return_attention: bool = False) -> list[Hypothesis]:
    """Greedy-decode encoded sentences in length-sorted token-budget batches; results in input order."""
    model.eval()
    out: list[Hypothesis | None] = [None] * len(src)
    for idx in make_batches([len(s) for s in src], None, cfg.batch_tokens):
        b = collate([src[i] for i in idx], None, idx).to(device)
        hyps = greedy_search(model, b.src, b.src_lens, cfg.max_len_ratio, cfg.max_len_extra, return_attention)
        for i, h in zip(idx, hyps):
            out[i] = h
    return out  # type: ignore[return-value]


def validation_bleu(model: Seq2Seq, src: list[list[int]], refs: list[str], detok, cfg: DecodeConfig,
                    device: torch.device) -> tuple[float, list[str]]:
    """Greedy translations scored with sacreBLEU (cased, 13a) against the raw references."""
    hyps = detok([h.tokens for h in decode_ids(model, src, cfg, device)])
    return sacrebleu.corpus_bleu(hyps, [refs]).score, hyps
