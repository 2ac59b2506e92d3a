"""mt: a recurrent (LSTM) neural machine translation toolkit.

Shape letters used in docstrings and trailing comments throughout the package (batch-first at every module
boundary; the decoder's teacher-forced loop runs time-major inside, and its comments say so):

    B  batch size (sentences)          S  source length (subword tokens, padded)
    T  target length (padded)          E  embedding size
    H  hidden size (decoder; encoder output size, both directions together); H' one encoder direction
    L  recurrent layers                A  attention size (Bahdanau)
    V  vocabulary size                 K  beam size
    G  gate blocks of a cell (LSTM 4, GRU 3, plain RNN 1): recurrent weights have G*H rows
    I  a recurrent layer's input size  F  the input-feeding vector's size (the decoder's H)
    N  real (non-padding) target tokens of a batch, the rows that reach the output layer
    R  sentences still being searched (beam search drops finished ones: R <= B)
    P  prompt length (language-model sampling)
Lower-case t counts decoding steps taken so far.

Public entry points: ``mt.config.load_config``, ``mt.decode.translator.Translator`` and the ``mt`` command line.
"""

from mt.errors import MTError

__version__ = "0.1.0"
__all__ = ["MTError", "__version__"]
