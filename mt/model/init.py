"""The starting weights of a model, all chosen here: ``initialize(model)`` runs once after a model is built.

Building and initialising are separate steps so that a model about to receive a checkpoint's weights skips the
second (``build_model(..., init_weights=False)``): the orthogonal matrices below cost a QR decomposition each.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["initialize"]


def initialize(model: nn.Module) -> None:
    """Every layer of ``model`` (a translator or a language model), in module order:

    - embeddings: normal with standard deviation E^-0.5 (so an embedding vector has length about 1), padding row 0;
    - recurrent layers (``nn.LSTM``/``GRU``/``RNN`` and the decoder's ``StackedRecurrent``), per gate block:
      Xavier-uniform input weights and an orthogonal recurrent matrix, so that repeated multiplication through time
      neither explodes nor vanishes at the start (Saxe et al. 2014); zero biases, except the LSTM forget gate's
      bias 1, so the cell starts out remembering (Jozefowicz et al. 2015);
    - linear layers: Xavier-uniform, zero bias (Glorot and Bengio 2010); a tied output layer keeps the values of
      the embeddings it shares.
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    with torch.no_grad():
        for module in model.modules():  # a shared module (share_embeddings) comes once
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=module.embedding_dim ** -0.5)
                if module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.Linear) and id(module.weight) not in embeddings:
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    module.bias.zero_()
            else:
                for suffix in _recurrent_layers(module):
                    _init_recurrent_layer(*(getattr(module, f"{name}{suffix}") for name in
                                            ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))


def _recurrent_layers(module: nn.Module) -> list[str]:
    """The suffixes (``_l0``, ``_l0_reverse``, ...) of the recurrent layers whose weights ``module`` holds itself."""
    prefix = "weight_hh"
    return [name[len(prefix):] for name, _ in module.named_parameters(recurse=False) if name.startswith(prefix)]


def _init_recurrent_layer(w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor) -> None:
    """One layer's weights: w_ih (G*H, I), w_hh (G*H, H), biases (G*H,), G gate blocks of H rows each (LSTM: i, f,
    g, o; GRU: r, z, n; plain RNN: one)."""
    hidden = w_hh.shape[1]
    gates = w_hh.shape[0] // hidden
    for g in range(gates):
        nn.init.xavier_uniform_(w_ih[g * hidden:(g + 1) * hidden])
        nn.init.orthogonal_(w_hh[g * hidden:(g + 1) * hidden])
    b_ih.zero_()
    b_hh.zero_()
    if gates == 4:  # LSTM, gate order i, f, g, o: the forget gate starts open
        b_ih[hidden:2 * hidden].fill_(1.0)
