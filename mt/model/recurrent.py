"""The decoder's recurrent layers, run one time step at a time, with the cell equations written out.

Why not ``nn.LSTM`` over the whole target sentence, as the encoder does? Input feeding (Luong et al. 2015): each
step's input holds the previous step's attentional vector, which exists only once that step has attended. So the
decoder calls this module once per step.

Parameters are named and laid out like ``nn.LSTM``'s (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
``bias_hh_l{k}``; gate blocks i, f, g, o for LSTM and r, z, n for GRU), so that a language model's weights carry
over (``mt.recipes.transfer``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mt.model.cells import GATES

__all__ = ["StackedRecurrent"]


class StackedRecurrent(nn.Module):
    """``layers`` recurrent layers (``cell``: lstm, gru or rnn) of size H. Layer 0 reads ``[x; feed]``: an input of
    size ``input_dim`` (the decoder's token embedding, E) and a fed-back vector of size ``feed_dim`` (the previous
    attentional vector, F; 0 for none); each layer above reads the one below, through dropout."""

    def __init__(self, cell: str, input_dim: int, feed_dim: int, hidden_dim: int, layers: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        self.cell, self.input_dim, self.feed_dim, self.hidden_dim, self.layers = (
            cell, input_dim, feed_dim, hidden_dim, layers)
        gates = GATES[cell] * hidden_dim  # G*H rows: one block of H per gate
        for k in range(layers):
            width = input_dim + feed_dim if k == 0 else hidden_dim
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(gates, width)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(gates, hidden_dim)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.zeros(gates)))
            self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.zeros(gates)))
        self.dropout = nn.Dropout(dropout)

    def layer(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer k's W_ih (G*H, I), W_hh (G*H, H), b_ih and b_hh (G*H,)."""
        return tuple(getattr(self, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def forward(self, x: torch.Tensor, h: list[torch.Tensor],
                c: list[torch.Tensor] | None) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """One time step of every layer. x: (B, E + F) layer 0's input; h, c: L x (B, H) the states after the
        previous step (c: LSTM only, else None) -> the new h and c lists; h[-1] (B, H) is the top layer's output."""
        new_h, new_c = [], [] if c is not None else None
        below = x
        for k in range(self.layers):
            inp = below if k == 0 else self.dropout(below)
            if self.cell == "lstm":
                h_k, c_k = _lstm_cell(inp, h[k], c[k], *self.layer(k))
                new_c.append(c_k)
            elif self.cell == "gru":
                h_k = _gru_cell(inp, h[k], *self.layer(k))
            else:
                h_k = _rnn_cell(inp, h[k], *self.layer(k))
            new_h.append(h_k)
            below = h_k
        return new_h, new_c


def _lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM (Hochreiter & Schmidhuber 1997, with a forget gate: Gers et al. 2000). x (B, I), h and c (B, H)
    -> the new h and c (B, H)."""
    gates = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)  # (B, 4H): all four gates in one multiply each
    i, f, g, o = gates.chunk(4, dim=1)  # 4 x (B, H)
    i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)  # input, forget, output gates, in (0, 1)
    g = torch.tanh(g)  # the candidate content, in (-1, 1)
    # The cell state is the memory: the forget gate keeps a share of the old one, the input gate adds new content.
    # Backpropagation through time flows back along this sum, scaled by f at each step, not squashed by a tanh:
    # that is why an LSTM learns dependencies over many steps where a plain RNN's gradients vanish.
    c = f * c + i * g  # (B, H)
    h = o * torch.tanh(c)  # (B, H): the output gate decides what of the memory the step shows
    return h, c


def _gru_cell(x, h, w_ih, w_hh, b_ih, b_hh) -> torch.Tensor:
    """The GRU (Cho et al. 2014), as ``nn.GRU`` computes it. x (B, I), h (B, H) -> the new h (B, H)."""
    gi = F.linear(x, w_ih, b_ih)  # (B, 3H)
    gh = F.linear(h, w_hh, b_hh)  # (B, 3H)
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)  # reset gate: how much of the old state the candidate sees
    z = torch.sigmoid(i_z + h_z)  # update gate: how much of the old state is kept
    n = torch.tanh(i_n + r * h_n)  # the candidate state
    return (1 - z) * n + z * h


def _rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh) -> torch.Tensor:
    """The plain (Elman) RNN: h = tanh(W_ih x + W_hh h + b). x (B, I), h (B, H) -> the new h (B, H)."""
    return torch.tanh(F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh))
