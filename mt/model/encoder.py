"""Embeddings + a (bi)directional recurrent network, and the bridge to the decoder.

Speed: padding must never change a sentence's states, which ``pack_padded_sequence`` guarantees but runs
through a slow per-step path on CPUs (zero-fills and per-step weight-gradient sums in its backward pass). Here
the batch is sorted by length and each direction runs torch's fused whole-sequence kernel (oneDNN on CPU)
once per distinct length, on the sentences still running, carrying the state from one chunk to the next;
the backward direction reads every sentence reversed within its own length. Same numbers as packing, with no
work spent on padding, and about 100 ms less per 4k-token training batch on 2 cores. Without gradients
(decoding, validation) packing is as fast, so it is used there, and on GPUs, where cuDNN packs natively.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mt.config import ModelConfig
from mt.data.tokenizer import PAD_ID
from mt.model.activations import tanh
from mt.model.cells import GATES, RNN_CLASSES
from mt.model.dropout import ByteDropout
from mt.model.init import init_linear, init_recurrent
from mt.profiling import ENCODER, span

__all__ = ["Bridge", "Encoder", "EncoderOutput"]

_RNN_KERNELS = {"lstm": torch.lstm, "gru": torch.gru, "rnn": torch.rnn_tanh}  # fused whole-sequence kernels


@functools.cache
def _bf16_lstm_kernel() -> bool:
    """Whether torch's CPU LSTM kernel runs under bf16 autocast here. It calls oneDNN's bf16 LSTM, which CPUs
    without AVX-512 (e.g. AMD Zen 3) lack ("could not create a primitive descriptor"): the encoder then stays
    fp32 under bf16 autocast (bf16 is slower than fp32 on such CPUs anyway: ``train.precision=auto`` picks fp32)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        try:
            torch.lstm(torch.zeros(1, 1, 2), (torch.zeros(1, 1, 2),) * 2, [torch.zeros(8, 2)] * 2 + [torch.zeros(8)] * 2,
                       True, 1, 0.0, False, False, True)
        except RuntimeError:
            return False
    return True


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


class _Chunks:
    """How a batch sorted by length (longest first) splits into time chunks: in chunk [start, end), the first
    ``running`` sentences are still reading, and sentences ``finishing_from:running`` end with the chunk."""

    def __init__(self, lengths: list[int]):  # descending
        self.parts = []  # (start, end, running, finishing_from)
        start = 0
        for end in sorted(set(lengths)):
            running = sum(1 for n in lengths if n >= end)
            self.parts.append((start, end, running, sum(1 for n in lengths if n > end)))
            start = end


def _reverse_index(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B,) lengths -> (B, S) positions that reverse each row's first ``length`` entries and keep its padding."""
    pos = torch.arange(width, device=lengths.device).unsqueeze(0)  # (1, S)
    last = (lengths - 1).unsqueeze(1)  # (B, 1)
    return torch.where(pos <= last, last - pos, pos)  # (B, S)


class Encoder(nn.Module):
    """Reads the source sentence. Every sentence's states are independent of padding (see the module doc)."""

    chunked = True  # False: nn.LSTM/GRU/RNN on packed sequences (slower on CPU; `python -m eval.bench --baseline`)

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        """Sizes, cell, directions and dropout from ``cfg`` (``cell``, ``emb_dim``, ``hidden_dim``, ``layers``,
        ``bidirectional``, ``dropout``); ``vocab_size`` source pieces."""
        super().__init__()
        cell, layers = cfg.cell, cfg.layers
        self.cell, self.layers, self.bidirectional = cell, layers, cfg.bidirectional
        self.directions = 2 if cfg.bidirectional else 1
        self.hidden_dim = cfg.hidden_dim
        self.embed = nn.Embedding(vocab_size, cfg.emb_dim, padding_idx=PAD_ID)
        self.dropout = ByteDropout(cfg.dropout)
        # Holds the weights (named like nn.LSTM's, so language models carry over); forward runs them in _run.
        self.rnn = RNN_CLASSES[cell](cfg.emb_dim, cfg.hidden_dim // self.directions, num_layers=layers,
                                     batch_first=True, bidirectional=cfg.bidirectional)
        nn.init.normal_(self.embed.weight, std=cfg.emb_dim ** -0.5)
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
        fp32 = src.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not _bf16_lstm_kernel()
        with span(ENCODER), torch.autocast("cpu", enabled=False) if fp32 else nullcontext():
            # Packing is as fast when nothing is differentiated (decoding, validation) and serves int8 RNNs;
            # on GPUs cuDNN runs packed sequences natively (and would re-pack loose weights at every chunk).
            if not (self.chunked and torch.is_grad_enabled() and src.device.type == "cpu") \
                    or type(self.rnn) is not RNN_CLASSES[self.cell]:
                return self._forward_packed(src, src_lens)
            return self._forward_chunked(src, src_lens)

    def _forward_chunked(self, src: torch.Tensor, src_lens: torch.Tensor) -> EncoderOutput:
        length = src.shape[1]
        order = src_lens.argsort(descending=True, stable=True)  # (B,) longest first
        lengths = src_lens.index_select(0, order)  # (B,)
        chunks = _Chunks(lengths.tolist())
        reverse = _reverse_index(lengths, length).unsqueeze(2)  # (B, S, 1)
        x = self.dropout(self.embed(src.index_select(0, order)))  # (B, S, E), sorted
        finals_h, finals_c = [], []  # L * dirs x (B, H / dirs), layer-major like nn.LSTM's h_n
        for k in range(self.layers):
            if k:
                x = self.dropout(x)  # between layers, like nn.LSTM's dropout
            outs = []
            for d in range(self.directions):
                inp = x if d == 0 else x.gather(1, reverse.expand_as(x))  # backward: each sentence reversed
                out, h, c = self._run(inp, chunks, self._weights(k, d))  # (B, S, H / dirs), (B, H / dirs) x 2
                outs.append(out if d == 0 else out.gather(1, reverse.expand_as(out)))
                finals_h.append(h)
                finals_c.append(c)
            x = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]  # (B, S, H), zero at padding
        unsort = order.argsort()  # (B,)
        states = x.index_select(0, unsort)  # (B, S, H)
        final_h = torch.stack(finals_h).index_select(1, unsort)  # (L * dirs, B, H / dirs)
        final_c = torch.stack(finals_c).index_select(1, unsort) if self.cell == "lstm" else None
        return EncoderOutput(states, self._join(final_h), None if final_c is None else self._join(final_c),
                             src != PAD_ID)

    def _forward_packed(self, src: torch.Tensor, src_lens: torch.Tensor) -> EncoderOutput:
        x = self.dropout(self.embed(src))  # (B, S, E)
        packed = pack_padded_sequence(x, src_lens.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])  # (B, S, H)
        h, c = final if self.cell == "lstm" else (final, None)
        return EncoderOutput(states, self._join(h), None if c is None else self._join(c), src != PAD_ID)

    def _weights(self, layer: int, direction: int) -> list[torch.Tensor]:
        """[W_ih, W_hh, b_ih, b_hh] of one layer and direction."""
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        return [getattr(self.rnn, name + suffix) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def _run(self, x: torch.Tensor, chunks: _Chunks, weights: list[torch.Tensor]):
        """One direction of one layer over a sorted batch x (B, S, I) -> outputs (B, S, H'), zero at padding,
        and each sentence's final h and c (B, H') (c is None unless LSTM)."""
        batch, length, _ = x.shape
        size = weights[1].shape[1]  # H' = H / dirs
        h = x.new_zeros(1, batch, size)
        c = x.new_zeros(1, batch, size) if self.cell == "lstm" else None
        pieces, final_h, final_c = [], [], []
        for start, end, running, finishing_from in chunks.parts:
            hx = (h, c) if c is not None else h
            out, *state = _RNN_KERNELS[self.cell](x[:running, start:end], hx, weights, True, 1, 0.0,
                                                  self.training, False, True)  # out (running, end - start, H')
            pieces.append(F.pad(out, (0, 0, 0, 0, 0, batch - running)))  # (B, end - start, H')
            h = state[0]  # (1, running, H')
            final_h.append(h[0, finishing_from:])
            h = h[:, :finishing_from]
            if c is not None:
                c = state[1]
                final_c.append(c[0, finishing_from:])
                c = c[:, :finishing_from]
        out = torch.cat(pieces, dim=1)  # (B, longest, H')
        out = F.pad(out, (0, 0, 0, length - out.shape[1]))  # (B, S, H')
        # Sentences finish shortest first, so the final states were collected in ascending length order.
        final_h = torch.cat(final_h[::-1])  # (B, H'), longest first like x
        return out, final_h, torch.cat(final_c[::-1]) if c is not None else None

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
        h0 = tanh(self.h(enc.final_h))  # (L, B, H)
        if self.c is None:
            return h0, None
        c_in = enc.final_c if enc.final_c is not None else enc.final_h
        return h0, tanh(self.c(c_in))  # (L, B, H)
