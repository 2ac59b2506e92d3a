"""Scores of given translations (force decoding): how likely the model finds a reference, as Marian's scorer and
fairseq's ``--score-reference`` report it; used to filter noisy corpora and to rerank.

The score of a pair is the sum of the log-probabilities of the reference's subwords and the closing EOS under the
teacher-forced model, fp32 logits (as in search), no label smoothing: ``-sum / tokens`` is the pair's share of the
validation loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mt.data.batching import collate, make_batches
from mt.data.tokenizer import PAD_ID
from mt.device import autocast
from mt.errors import MTError
from mt.model import Seq2Seq
from mt.text import normalize

__all__ = ["ReferenceScore", "score_references"]


@dataclass
class ReferenceScore:
    log_prob: float  # sum over the reference's subwords and EOS
    tokens: int  # how many (EOS included)

    @property
    def per_token(self) -> float:
        return self.log_prob / self.tokens


def score_references(translator, sources: list[str], references: list[str]) -> list[ReferenceScore]:
    """Line i of ``references`` scored as the translation of line i of ``sources`` by ``translator``'s model
    (longer sides are cut at ``data.max_tokens`` subwords, as in training)."""
    if len(sources) != len(references):
        raise MTError(f"--score-reference: {len(sources):,} input lines but {len(references):,} reference lines")
    model = translator.model
    if not isinstance(model, Seq2Seq):
        raise MTError("--score-reference scores with one model: drop --ensemble and --quantize")
    limit, tok = translator.max_src_tokens, translator.tokenizer
    src = [x[:limit] for x in tok.encode_src([normalize(s) for s in sources])]
    tgt = [x[:limit] for x in tok.encode_tgt([normalize(t) for t in references])]
    scores: list[ReferenceScore] = [ReferenceScore(0.0, 0)] * len(src)
    for rows in make_batches([len(s) or 1 for s in src], [len(t) for t in tgt], translator.cfg.decode.batch_tokens):
        b = collate([src[i] for i in rows], [tgt[i] for i in rows], rows).to(translator.device)
        with torch.inference_mode(), autocast(translator.device, translator.precision):
            vectors = model(b.src, b.src_lens, b.tgt_in)  # (B, T, H or E)
            with torch.autocast(vectors.device.type, enabled=False):
                logp = torch.log_softmax(model.output_layer(vectors.float()), dim=-1)  # (B, T, V) fp32
        picked = logp.gather(2, b.tgt_out.unsqueeze(2)).squeeze(2)  # (B, T)
        real = b.tgt_out != PAD_ID
        sums, counts = (picked * real).sum(1).tolist(), real.sum(1).tolist()
        for i, total, n in zip(rows, sums, counts):
            scores[i] = ReferenceScore(total, int(n))
    return scores
