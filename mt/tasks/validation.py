"""Validation BLEU: greedy translations of encoded sentences scored with sacreBLEU (the loss is
``SummedLoss.validation_loss``). They are decoded in ``decode.precision``, as ``mt eval``/``translate`` decode,
so the score that picks best.pt during training, the final choice's scores and ``mt eval --beam 1`` agree (bf16 and
fp32 greedy BLEU of one Multi30k checkpoint differed by 0.16)."""

from __future__ import annotations

import sacrebleu
import torch

from mt.backends import use_decoding
from mt.config import DecodeConfig
from mt.data.batching import collate, make_batches
from mt.decode.greedy import greedy_search
from mt.decode.search import Hypothesis
from mt.device import autocast
from mt.model import Seq2Seq

__all__ = ["decode_ids", "validation_bleu"]


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
    """Greedy translations, decoded in ``cfg.precision``, scored with sacreBLEU (cased, 13a) against the raw
    references."""
    device = torch.device(device)
    use_decoding(model, cfg)
    with autocast(device, cfg.precision):
        hyps = detok([h.tokens for h in decode_ids(model, src, cfg, device)])
    return sacrebleu.corpus_bleu(hyps, [refs]).score, hyps
