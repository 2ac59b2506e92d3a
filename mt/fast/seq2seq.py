"""The translator and the language model of ``mt.model`` made of the fast parts: the same parameters, so a
checkpoint of one backend loads into the other."""

from __future__ import annotations

from mt.fast.decoder import FastDecoder
from mt.fast.dropout import ByteDropout
from mt.fast.encoder import FastEncoder
from mt.model.lm import LanguageModel
from mt.model.seq2seq import Seq2Seq

__all__ = ["FastLanguageModel", "FastSeq2Seq"]


class FastSeq2Seq(Seq2Seq):
    encoder_class = FastEncoder
    decoder_class = FastDecoder

    def use_candidates(self, kind: str) -> None:
        """``decode.candidates`` for search: approximate or exact (``FastDecoder.use_candidates``)."""
        self.decoder.use_candidates(kind)


class FastLanguageModel(LanguageModel):
    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, layers: int = 1, cell: str = "lstm",
                 dropout: float = 0.0, tie_embeddings: bool = False):
        super().__init__(vocab_size, emb_dim, hidden_dim, layers, cell, dropout, tie_embeddings)
        self.dropout = ByteDropout(dropout)
