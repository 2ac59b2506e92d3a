"""Validation BLEU: greedy translations of encoded sentences scored with sacreBLEU (the loss is
``SummedLoss.validation_loss``). They are decoded in ``decode.precision``, as ``mt eval``/``translate`` decode,
so the score that picks best.pt during training, the final choice's scores and ``mt eval --beam 1`` agree (bf16 and
fp32 greedy BLEU of one Multi30k checkpoint differed by 0.16)."""

from __future__ import annotations

from collections.abc import Callable

import sacrebleu
import torch

from mt.backends import use_decoding
from mt.config import DecodeConfig
from mt.data.batching import collate, make_batches
from mt.decode.greedy import greedy_search
from mt.decode.search import Hypothesis
from mt.decode.segment import split_to_fit
from mt.device import autocast
from mt.model import Seq2Seq

__all__ = ["decode_ids", "parts_that_fit", "validation_bleu"]


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


def parts_that_fit(sources: list[str], ids: list[list[int]], encode: Callable[[list[str]], list[list[int]]],
                   limit: int) -> list[list[list[int]]]:
    """Each validation line as the parts `mt translate` translates it in: the line itself within ``limit`` subwords,
    else ``split_to_fit``'s parts (``ids[i]`` are the subwords of ``sources[i]``). A huge line costs a few
    sentences' decoding at every validation, not one search over all of it."""
    count = lambda texts: [len(x) for x in encode(texts)]  # noqa: E731
    return [[line_ids] if len(line_ids) <= limit else encode(split_to_fit(text, count, limit))
            for text, line_ids in zip(sources, ids)]


def validation_bleu(model: Seq2Seq, src: list[list[list[int]]], refs: list[str], detok, cfg: DecodeConfig,
                    device: torch.device) -> tuple[float, list[str]]:
    """Greedy translations of each line's parts (``parts_that_fit``) joined by spaces, decoded in
    ``cfg.precision``, scored with sacreBLEU (cased, 13a) against the raw references."""
    device = torch.device(device)
    use_decoding(model, cfg)
    flat = [part for parts in src for part in parts]
    with autocast(device, cfg.precision):
        translated = iter(detok([h.tokens for h in decode_ids(model, flat, cfg, device)]))
    hyps = [" ".join(next(translated) for _ in parts) for parts in src]
    return sacrebleu.corpus_bleu(hyps, [refs]).score, hyps
