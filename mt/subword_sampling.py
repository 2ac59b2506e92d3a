"""Subword regularisation (Kudo 2018): each time a training pair is batched, both sides are segmented afresh by
sampling from the SentencePiece model, instead of always reading its one best segmentation. The model sees
"▁bush es" one epoch and "▁bushes" the next, which regularises small corpora (Kudo reports about +1 BLEU on
IWSLT-sized data). Validation, decoding and the stored corpus keep the deterministic segmentation.

``train.subword_alpha`` is SentencePiece's sampling smoothing (0 = off); ``train.subword_nbest`` how many best
segmentations to sample from (-1: all, by forward-filtering backward-sampling). Unigram models sample a whole
segmentation; BPE models read alpha as BPE-dropout's merge-dropping rate and ignore nbest.
Cost on Multi30k: about 50 ms per 4,000-token batch (l = 64), in the thread that prepares the next batch.
"""

from __future__ import annotations

import sentencepiece as spm

from mt.tokenizer import Tokenizer

__all__ = ["SubwordSampler"]


class SubwordSampler:
    def __init__(self, tokenizer: Tokenizer, alpha: float, nbest: int, max_tokens: int, seed: int):
        self.tokenizer, self.alpha, self.nbest, self.max_tokens = tokenizer, alpha, nbest, max_tokens
        spm.set_random_generator_seed(seed)  # one generator for the process: reproducible given the batch order

    def _resample(self, proc: spm.SentencePieceProcessor, seqs: list[list[int]]) -> list[list[int]]:
        # One sentence at a time: a list is encoded by a thread pool whose threads re-seed their generators from
        # the global seed at every call, so each call would draw the same "sample" again.
        sampled = [proc.encode(text, enable_sampling=True, alpha=self.alpha, nbest_size=self.nbest)
                   for text in proc.decode(seqs)]
        # a sample longer than the corpus' length limit (or empty) keeps the stored segmentation
        return [new if 0 < len(new) <= max(self.max_tokens, len(old)) else old for new, old in zip(sampled, seqs)]

    def __call__(self, src: list[list[int]], tgt: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
        """One batch's stored ids (without BOS/EOS) -> freshly sampled segmentations of the same sentences."""
        return self._resample(self.tokenizer.src, src), self._resample(self.tokenizer.tgt, tgt)
