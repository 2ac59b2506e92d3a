"""The encoder's training pass without packing: the same states as ``mt.model.encoder.Encoder``, faster on CPUs.

Padding must never change a sentence's states, which ``pack_padded_sequence`` guarantees but runs through a slow
per-step path on CPUs (zero-fills and per-step weight-gradient sums in its backward pass). Here the batch is
sorted by length and each direction runs torch's fused whole-sequence kernel (oneDNN on CPU) once per distinct
length, on the sentences still running, carrying the state from one chunk to the next; the backward direction
reads every sentence reversed within its own length. Same numbers as packing, with no work spent on padding.
Without gradients (decoding, validation) packing is as fast, so the reference pass runs there, and on GPUs,
where cuDNN packs natively.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from mt.config import ModelConfig
from mt.data.tokenizer import PAD_ID
from mt.fast.dropout import ByteDropout
from mt.model.cells import RNN_CLASSES
from mt.model.encoder import Encoder, EncoderOutput
from mt.profiling import ENCODER, span

__all__ = ["FastEncoder"]

_RNN_KERNELS = {"lstm": torch.lstm, "gru": torch.gru, "rnn": torch.rnn_tanh}  # fused whole-sequence kernels


@functools.cache
def bf16_lstm_kernel() -> bool:
    """Whether torch's CPU LSTM kernel runs under bf16 autocast here. It calls oneDNN's bf16 LSTM, which CPUs
    without AVX-512 lack ("could not create a primitive descriptor"): the encoder then stays fp32 under bf16
    autocast (``train.precision=auto`` picks fp32 on such CPUs anyway)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        try:
            torch.lstm(torch.zeros(1, 1, 2), (torch.zeros(1, 1, 2),) * 2, [torch.zeros(8, 2)] * 2 + [torch.zeros(8)] * 2,
                       True, 1, 0.0, False, False, True)
        except RuntimeError:
            return False
    return True


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


class FastEncoder(Encoder):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__(cfg, vocab_size)
        self.dropout = ByteDropout(cfg.dropout)

    def forward(self, src: torch.Tensor, src_lens: torch.Tensor) -> EncoderOutput:
        """src: (B, S) token ids, src_lens: (B,) lengths (at least 1)."""
        fp32 = src.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not bf16_lstm_kernel()
        with span(ENCODER), torch.autocast("cpu", enabled=False) if fp32 else nullcontext():
            # int8 RNNs (mt translate --quantize) have their own kernels: packed sequences
            if torch.is_grad_enabled() and src.device.type == "cpu" and type(self.rnn) is RNN_CLASSES[self.cell]:
                return self._forward_chunked(src, src_lens)
            return super().forward(src, src_lens)

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
        return EncoderOutput(states, self.join_directions(final_h),
                             None if final_c is None else self.join_directions(final_c), src != PAD_ID)

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
