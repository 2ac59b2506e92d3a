"""Initialisation that keeps gradients healthy through time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["init_recurrent", "init_linear", "weights_to_be_loaded"]

_SKIP = False


@contextmanager
def weights_to_be_loaded() -> Iterator[None]:
    """Models built inside skip the orthogonal recurrent initialisation: their weights are about to be overwritten
    by a checkpoint's (16 QR decompositions, 0.1 s of `mt translate`'s start-up on a 2-core Xeon)."""
    global _SKIP
    _SKIP, before = True, _SKIP
    try:
        yield
    finally:
        _SKIP = before


def init_recurrent(w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor | None, b_hh: torch.Tensor | None,
                   gates: int, is_lstm: bool) -> None:
    """Xavier-uniform input weights, an orthogonal matrix per gate for the recurrent weights (so repeated
    multiplication neither explodes nor vanishes at the start), zero biases and LSTM forget-gate bias 1
    (Jozefowicz et al. 2015)."""
    hidden = w_hh.shape[1]
    if _SKIP:
        return
    with torch.no_grad():
        for g in range(gates):
            nn.init.xavier_uniform_(w_ih[g * hidden:(g + 1) * hidden])
            nn.init.orthogonal_(w_hh[g * hidden:(g + 1) * hidden])
        for b in (b_ih, b_hh):
            if b is not None:
                b.zero_()
        if is_lstm and b_ih is not None:
            b_ih[hidden:2 * hidden].fill_(1.0)  # gate order i, f, g, o: the forget gate starts open


def init_linear(layer: nn.Linear) -> None:
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
