"""The decoder's recurrent step (``mt.model.recurrent.StackedRecurrent``) with fewer, larger multiplies.

Layer 0's input is ``[x; feed]``. The reference multiplies ``[x; feed]`` by W_ih and h by W_hh at every step;
here the embedding part is projected for all steps of a batch at once (``project_input``, with both biases
folded in), and each step then needs a single multiply ``[feed; h] @ [W_feed | W_hh]^T`` per layer for LSTM and
plain RNN cells (``step_weights`` concatenates those once per batch). Same numbers up to rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mt.fast.activations import tanh
from mt.model.recurrent import StackedRecurrent

__all__ = ["project_input", "step", "step_weights"]


def _input_bias(rnn: StackedRecurrent, k: int) -> torch.Tensor:
    _, _, b_ih, b_hh = rnn.layer(k)
    return b_ih if rnn.cell == "gru" else b_ih + b_hh  # GRU keeps b_hn inside r * (W_hn h + b_hn)


def project_input(rnn: StackedRecurrent, x: torch.Tensor) -> torch.Tensor:
    """x: (..., E) -> (..., G*H), e.g. (T, B, E): layer 0's input projection (with biases) for all steps at once."""
    return F.linear(x, rnn.weight_ih_l0[:, : rnn.input_dim], _input_bias(rnn, 0))  # (..., G*H)


def step_weights(rnn: StackedRecurrent) -> list[torch.Tensor]:
    """Per layer, the matrix applied at every step: [W_feed | W_hh] for layer 0, [W_ih | W_hh] above."""
    weights = []
    for k in range(rnn.layers):
        w_ih, w_hh, _, _ = rnn.layer(k)  # w_hh: (G*H, H)
        w_in = w_ih[:, rnn.input_dim:] if k == 0 else w_ih  # (G*H, F) or (G*H, H)
        weights.append(w_hh if w_in.shape[1] == 0 else torch.cat([w_in, w_hh], dim=1))
    return weights


def step(rnn: StackedRecurrent, x_proj: torch.Tensor, feed: torch.Tensor, h: list[torch.Tensor],
         c: list[torch.Tensor] | None, weights: list[torch.Tensor]):
    """One time step of every layer. x_proj: (B, G*H) from ``project_input``; feed: (B, F); h, c: L x (B, H);
    weights: ``step_weights(rnn)`` -> the new (h, c) lists, as ``rnn(torch.cat([x, feed], 1), h, c)``."""
    new_h, new_c = [], [] if c is not None else None
    below = feed
    for k in range(rnn.layers):
        pre = x_proj if k == 0 else _input_bias(rnn, k)  # (B, G*H) or (G*H,)
        inp = below if k == 0 else rnn.dropout(below)
        if rnn.cell == "gru":
            h_k = _gru(rnn, k, pre, inp, h[k], weights[k])
        else:
            joined = h[k] if inp.shape[-1] == 0 else torch.cat([inp, h[k]], dim=1)  # (B, F+H)
            gates = torch.addmm(pre, joined, weights[k].t())  # (B, G*H)
            if rnn.cell == "lstm":
                i, f, g, o = gates.chunk(4, dim=1)  # 4 x (B, H)
                c_k = torch.sigmoid(f) * c[k] + torch.sigmoid(i) * tanh(g)
                h_k = torch.sigmoid(o) * tanh(c_k)
                new_c.append(c_k)
            else:
                h_k = tanh(gates)
        new_h.append(h_k)
        below = h_k
    return new_h, new_c


def _gru(rnn: StackedRecurrent, k: int, pre: torch.Tensor, inp: torch.Tensor, h: torch.Tensor,
         weight: torch.Tensor) -> torch.Tensor:
    hidden = rnn.hidden_dim
    n_in = weight.shape[1] - hidden
    gi = pre if n_in == 0 else pre + inp @ weight[:, :n_in].t()  # (B, 3H)
    gh = F.linear(h, weight[:, n_in:], getattr(rnn, f"bias_hh_l{k}"))  # (B, 3H)
    r = torch.sigmoid(gi[:, :hidden] + gh[:, :hidden])
    z = torch.sigmoid(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
    n = tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
    return (1 - z) * n + z * h
