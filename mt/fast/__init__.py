"""The fast backend: the model of ``mt.model`` computed with CPU speed paths, chosen by ``model.backend``.

    encoder.py       the bidirectional encoder's training pass in length chunks, without packing
    decoder.py       the decoder: fused training loop, search steps with tables, blocks and shortlists
    decoder_loop.py  the teacher-forced LSTM + attention loop with a hand-written backward pass
    recurrent.py     the decoder's step with one multiply per layer;  input_table.py  search's input lookups
    attention.py     additive attention scores for search, in cache-sized blocks
    top_tokens.py    the output layer's n best tokens per row, optionally from a bf16 or int8 shortlist
    loss.py          output layer and label-smoothed cross-entropy (and R-Drop) fused
    activations.py   tanh through sigmoid;  dropout.py  cheap dropout masks
    seq2seq.py       the translator and language model made of these parts

Every part subclasses or reads the reference part with the same parameters, and tests/test_backends.py proves
each equal to the reference (values and gradients, search outputs) within a stated tolerance. What a path buys
is measured in docs/results.md ("Speed").
"""

from mt.fast.loss import FastSummedLoss
from mt.fast.seq2seq import FastLanguageModel, FastSeq2Seq

__all__ = ["FastLanguageModel", "FastSeq2Seq", "FastSummedLoss"]
