"""Embeddings + a (bi)directional recurrent network over packed sequences, and the bridge to the decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mt.model.dropout import ByteDropout
from mt.model.init import init_linear, init_recurrent
from mt.tokenizer import PAD_ID

__all__ = ["Bridge", "Encoder", "EncoderOutput", "GATES", "RNN_CLASSES"]

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass
class EncoderOutput:
    states: torch.Tensor  # (B, S, H) top-layer states, both directions concatenated; zero at padding
    final_h: torch.Tensor  # (L, B, H) last state of each layer, both directions concatenated
    final_c: torch.Tensor | None  # (L, B, H) LSTM cell states, else None
    mask: torch.Tensor  # (B, S) True at real tokens

    def index_select(self, index: torch.Tensor) -> EncoderOutput:
        """Rows ``index`` of the batch (beam search expands and reorders sentences)."""
        return EncoderOutput(
            self.states.index_select(0, index),
            self.final_h.index_select(1, index),
            None if self.final_c is None else self.final_c.index_select(1, index),
            self.mask.index_select(0, index),
        )


class Encoder(nn.Module):
    """Reads the source sentence. Packed sequences make every sentence's states independent of padding."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, layers: int = 1, cell: str = "lstm",
                 bidirectional: bool = True, dropout: float = 0.0):
        super().__init__()
        self.cell, self.layers, self.bidirectional = cell, layers, bidirectional
        self.directions = 2 if bidirectional else 1
        self.hidden_dim = hidden_dim
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD_ID)
        self.dropout = ByteDropout(dropout)
        self.rnn = RNN_CLASSES[cell](
            emb_dim, hidden_dim // self.directions, num_layers=layers, batch_first=True,
            bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0,
        )
        nn.init.normal_(self.embed.weight, std=emb_dim ** -0.5)
        with torch.no_grad():
            self.embed.weight[PAD_ID].zero_()
        for name, _ in self.rnn.named_parameters():
            if name.startswith("weight_ih"):
                suffix = name[len("weight_ih"):]
                init_recurrent(
                    getattr(self.rnn, "weight_ih" + suffix), getattr(self.rnn, "weight_hh" + suffix),
                    getattr(self.rnn, "bias_ih" + suffix), getattr(self.rnn, "bias_hh" + suffix),
                    GATES[cell], cell == "lstm",
                )

    def forward(self, src: torch.Tensor, src_lens: torch.Tensor) -> EncoderOutput:
        """src: (B, S) token ids, src_lens: (B,) lengths (at least 1)."""
        batch, length = src.shape
        x = self.dropout(self.embed(src))  # (B, S, E)
        packed = pack_padded_sequence(x, src_lens.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=length)  # (B, S, H)
        h, c = final if self.cell == "lstm" else (final, None)
        return EncoderOutput(states, self._join(h), None if c is None else self._join(c), src != PAD_ID)

    def _join(self, final: torch.Tensor) -> torch.Tensor:
        """(L * dirs, B, H / dirs) -> (L, B, H): forward and backward final states side by side."""
        final = final.view(self.layers, self.directions, final.shape[1], final.shape[2])  # (L, dirs, B, H/dirs)
        return torch.cat(final.unbind(1), dim=-1)  # (L, B, H)


class Bridge(nn.Module):
    """Maps the encoder's final states to the decoder's initial states: h0 = tanh(W [h_fwd; h_bwd] + b)."""

    def __init__(self, hidden_dim: int, lstm: bool):
        super().__init__()
        self.h = nn.Linear(hidden_dim, hidden_dim)
        self.c = nn.Linear(hidden_dim, hidden_dim) if lstm else None
        for layer in (self.h, self.c):
            if layer is not None:
                init_linear(layer)

    def forward(self, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        h0 = torch.tanh(self.h(enc.final_h))  # (L, B, H)
        if self.c is None:
            return h0, None
        c_in = enc.final_c if enc.final_c is not None else enc.final_h
        return h0, torch.tanh(self.c(c_in))  # (L, B, H)
