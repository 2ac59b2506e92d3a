"""mt: a recurrent (LSTM) neural machine translation toolkit.

Shape letters used in docstrings and trailing comments throughout the package (batch-first everywhere):

    B  batch size (sentences)          S  source length (subword tokens, padded)
    T  target length (padded)          E  embedding size
    H  hidden size (decoder; encoder output size, both directions together)
    L  recurrent layers                A  attention size
    V  vocabulary size                 K  beam size

Public entry points: ``mt.config.load_config``, ``mt.translator.Translator`` and the ``mt`` command line.
"""

from mt.errors import MTError

__version__ = "0.1.0"
__all__ = ["MTError", "__version__"]
