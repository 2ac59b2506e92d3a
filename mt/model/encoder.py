"""The encoder: embeddings and a (bi)directional ``nn.LSTM``/``GRU``/``RNN`` over the source sentence, and the
bridge that turns its final states into the decoder's initial states."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mt.config import ModelConfig
from mt.data.tokenizer import PAD_ID
from mt.model.cells import RNN_CLASSES

__all__ = ["Bridge", "Encoder", "EncoderOutput"]


@dataclass
class EncoderOutput:
    states: torch.Tensor  # (B, S, H) top-layer states, both directions concatenated; zero at padding
    final_h: torch.Tensor  # (L, B, H) last state of each layer, both directions concatenated
    final_c: torch.Tensor | None  # (L, B, H) LSTM cell states, else None
    mask: torch.Tensor  # (B, S) True at real tokens

    def index_select(self, index: torch.Tensor) -> EncoderOutput:
        """Rows ``index`` of the batch (search reorders and drops sentences)."""
        return EncoderOutput(
            self.states.index_select(0, index),
            self.final_h.index_select(1, index),
            None if self.final_c is None else self.final_c.index_select(1, index),
            self.mask.index_select(0, index),
        )


class Encoder(nn.Module):
    """Reads the source sentence in both directions (Schuster & Paliwal 1997; as in Bahdanau et al. 2015): each
    position's state describes its word in the context of the whole sentence, left and right. Sizes, cell,
    directions and dropout from ``cfg``; ``vocab_size`` source pieces."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cell, self.layers = cfg.cell, cfg.layers
        self.directions = 2 if cfg.bidirectional else 1
        self.embed = nn.Embedding(vocab_size, cfg.emb_dim, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(cfg.dropout)
        # H / directions per direction, so that the two directions side by side have the decoder's size H
        self.rnn = RNN_CLASSES[cfg.cell](cfg.emb_dim, cfg.hidden_dim // self.directions, num_layers=cfg.layers,
                                         batch_first=True, bidirectional=cfg.bidirectional,
                                         dropout=cfg.dropout if cfg.layers > 1 else 0.0)

    def forward(self, src: torch.Tensor, src_lens: torch.Tensor) -> EncoderOutput:
        """src: (B, S) token ids, src_lens: (B,) lengths (at least 1)."""
        x = self.dropout(self.embed(src))  # (B, S, E)
        # Packing hands the RNN each sentence without its padding: the backward direction starts at the sentence's
        # own last word, and padding never changes a sentence's states.
        packed = pack_padded_sequence(x, src_lens.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])  # (B, S, H), 0 at padding
        h, c = final if self.cell == "lstm" else (final, None)  # (L * dirs, B, H / dirs) each
        return EncoderOutput(states, self.join_directions(h), None if c is None else self.join_directions(c),
                             src != PAD_ID)

    def join_directions(self, final: torch.Tensor) -> torch.Tensor:
        """(L * dirs, B, H / dirs), layer-major as ``nn.LSTM`` returns it -> (L, B, H): each layer's forward and
        backward final states side by side."""
        final = final.view(self.layers, self.directions, final.shape[1], final.shape[2])  # (L, dirs, B, H / dirs)
        return torch.cat(final.unbind(1), dim=-1)  # (L, B, H)


class Bridge(nn.Module):
    """Maps the encoder's final states to the decoder's initial states: h0 = tanh(W_h [h_fwd; h_bwd] + b), and for
    an LSTM c0 = tanh(W_c [c_fwd; c_bwd] + b) (as in Joey NMT's "bridge" and Bahdanau et al. 2015's s_0)."""

    def __init__(self, hidden_dim: int, lstm: bool):
        super().__init__()
        self.h = nn.Linear(hidden_dim, hidden_dim)
        self.c = nn.Linear(hidden_dim, hidden_dim) if lstm else None

    def forward(self, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        h0 = torch.tanh(self.h(enc.final_h))  # (L, B, H)
        if self.c is None:
            return h0, None
        return h0, torch.tanh(self.c(enc.final_c))  # (L, B, H)
