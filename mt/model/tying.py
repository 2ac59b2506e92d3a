"""Tied output embeddings (Press & Wolf 2017; Inan et al. 2017): the output layer reuses the target embedding
matrix (V, E), which halves the parameters a small corpus has to estimate. When the vectors before it have
another size H, a linear readout H -> E comes first, as in fairseq's LSTM decoder (``additional_fc`` with
``share_decoder_input_output_embed``)."""

from __future__ import annotations

from torch import nn

__all__ = ["output_layers"]


def output_layers(embed: nn.Embedding, hidden_dim: int, tie: bool) -> tuple[nn.Module, nn.Linear]:
    """-> (readout, output): readout H -> E when tied with E != H, else nothing (``nn.Identity``); output
    (H or E) -> V, bias-free, its weight the embedding matrix itself when tied."""
    vocab, emb_dim = embed.weight.shape
    if not tie:
        return nn.Identity(), nn.Linear(hidden_dim, vocab, bias=False)
    readout = nn.Linear(hidden_dim, emb_dim, bias=False) if emb_dim != hidden_dim else nn.Identity()
    output = nn.Linear(emb_dim, vocab, bias=False)
    output.weight = embed.weight
    return readout, output
