"""The encoder-decoder model: ``build_model(cfg.model, src_vocab, tgt_vocab)`` makes a ``Seq2Seq``."""

from mt.model.seq2seq import Seq2Seq, build_model

__all__ = ["Seq2Seq", "build_model"]
