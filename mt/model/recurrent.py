"""A stacked LSTM/GRU/RNN run one step at a time, for decoders (input feeding rules out whole-sequence kernels).

Parameters are laid out like ``nn.LSTM`` (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
``bias_hh_l{k}``, gate order i, f, g, o for LSTM and r, z, n for GRU), so language-model weights carry over.
Layer 0's input is ``[x; feed]``: the token embedding and an optional fed-back vector (input feeding).
Speed: the embedding part of layer 0 is projected for all steps in one matrix multiply (``project_input``),
and each step then needs a single multiply ``[feed; h] @ W`` per layer for LSTM and RNN cells.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mt.model.activations import tanh
from mt.model.cells import GATES
from mt.model.dropout import ByteDropout
from mt.model.init import init_recurrent

__all__ = ["StackedRecurrent"]


class StackedRecurrent(nn.Module):
    def __init__(self, cell: str, input_dim: int, feed_dim: int, hidden_dim: int, layers: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        self.cell, self.input_dim, self.feed_dim, self.hidden_dim, self.layers = cell, input_dim, feed_dim, hidden_dim, layers
        gates = GATES[cell] * hidden_dim
        for k in range(layers):
            in_k = input_dim + feed_dim if k == 0 else hidden_dim
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(gates, in_k)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(gates, hidden_dim)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(gates)))
            self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(gates)))
            init_recurrent(*self._params(k), GATES[cell], cell == "lstm")
        self.dropout = ByteDropout(dropout)

    def _params(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return (getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}"),
                getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}"))

    def _input_bias(self, k: int) -> torch.Tensor:
        _, _, b_ih, b_hh = self._params(k)
        return b_ih if self.cell == "gru" else b_ih + b_hh  # GRU keeps b_hn inside r * (W_hn h + b_hn)

    def project_input(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., E) -> (..., G*H), e.g. (T, B, E): layer 0's input projection (with biases) for all steps at once."""
        w_ih = self.weight_ih_l0[:, : self.input_dim]
        return F.linear(x, w_ih, self._input_bias(0))  # (..., G*H)

    def input_params(self) -> tuple[torch.Tensor, ...]:
        """What ``project_input`` depends on."""
        return self._params(0)

    def step_weights(self) -> list[torch.Tensor]:
        """Per layer, the matrix applied at every step: [W_feed | W_hh] for layer 0, [W_ih | W_hh] above.

        Computed once per sequence, so that a step is one matrix multiply per layer (LSTM, RNN)."""
        weights = []
        for k in range(self.layers):
            w_ih, w_hh, _, _ = self._params(k)  # w_hh: (G*H, H)
            w_in = w_ih[:, self.input_dim:] if k == 0 else w_ih  # (G*H, F) or (G*H, H)
            weights.append(w_hh if w_in.shape[1] == 0 else torch.cat([w_in, w_hh], dim=1))
        return weights

    def step(self, x_proj: torch.Tensor, feed: torch.Tensor | None, h: list[torch.Tensor],
             c: list[torch.Tensor] | None, weights: list[torch.Tensor]):
        """One time step. x_proj: (B, G*H) from ``project_input``; feed: (B, F) or None; h, c: L x (B, H).

        Returns the new (h, c) lists; h[-1] is the top layer's output (B, H)."""
        new_h, new_c = [], [] if c is not None else None
        below = feed
        for k in range(self.layers):
            pre = x_proj if k == 0 else self._input_bias(k)  # (B, G*H) or (G*H,)
            inp = below if k == 0 else self.dropout(below)
            if self.cell == "gru":
                h_k = self._gru(k, pre, inp, h[k], weights[k])
            else:
                joined = h[k] if inp is None or inp.shape[-1] == 0 else torch.cat([inp, h[k]], dim=1)  # (B, F+H)
                gates = torch.addmm(pre, joined, weights[k].t())  # (B, G*H)
                if self.cell == "lstm":
                    i, f, g, o = gates.chunk(4, dim=1)  # 4 x (B, H)
                    c_k = torch.sigmoid(f) * c[k] + torch.sigmoid(i) * tanh(g)
                    h_k = torch.sigmoid(o) * tanh(c_k)
                    new_c.append(c_k)
                else:
                    h_k = tanh(gates)
            new_h.append(h_k)
            below = h_k
        return new_h, new_c

    def _gru(self, k: int, pre: torch.Tensor, inp: torch.Tensor | None, h: torch.Tensor, weight: torch.Tensor):
        hidden = self.hidden_dim
        n_in = weight.shape[1] - hidden
        gi = pre if n_in == 0 else pre + inp @ weight[:, :n_in].t()  # (B, 3H)
        gh = F.linear(h, weight[:, n_in:], getattr(self, f"bias_hh_l{k}"))  # (B, 3H)
        r = torch.sigmoid(gi[:, :hidden] + gh[:, :hidden])
        z = torch.sigmoid(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
        n = tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
        return (1 - z) * n + z * h
