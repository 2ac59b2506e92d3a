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

Public entry points: ``mt.Translator`` (``mt.decode.translator``), ``mt.config.load_config`` and the ``mt``
command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mt.errors import MTError

if TYPE_CHECKING:
    from mt.decode.translator import Translator

__version__ = "0.1.0"
__all__ = ["MTError", "Translator", "__version__"]


def __getattr__(name: str):
    if name == "Translator":  # imported on first use: `import mt` alone does not load torch
        from mt.decode.translator import Translator

        return Translator
    raise AttributeError(f"module 'mt' has no attribute {name!r}")
