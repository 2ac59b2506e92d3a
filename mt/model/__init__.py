"""The reference model, written to be read: ``build_model(cfg.model, src_vocab, tgt_vocab)`` makes a ``Seq2Seq``.

    encoder.py    embeddings + bidirectional nn.LSTM/GRU/RNN (packed), and the bridge to the decoder
    attention.py  Bahdanau (additive) and Luong (multiplicative) attention, masked softmax
    recurrent.py  the decoder's stacked cells, one step at a time, the gate equations written out
    decoder.py    the step loop with input feeding: teacher forcing (training) and single steps (search)
    tying.py      tied output embeddings;  init.py  the starting weights;  loss.py  label smoothing, R-Drop
    seq2seq.py    the whole translator;  lm.py  a language model whose weights fit it

``mt.fast`` computes the same model faster on CPUs (``model.backend``); it imports this package, never the reverse.
"""

from mt.model.seq2seq import Seq2Seq, build_model

__all__ = ["Seq2Seq", "build_model"]
