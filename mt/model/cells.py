"""The recurrent cells a model can use (``model.cell``): torch's module for each, and its gate count G."""

from torch import nn

__all__ = ["GATES", "RNN_CLASSES"]

GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # G: gate blocks in weight_ih / weight_hh (H rows each)
RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
