"""The decoder (``mt.model.decoder.Decoder``) with the CPU speed paths: the same parameters and the same numbers up
to rounding (tests/test_backends.py), computed with fewer, larger operations.

Training: a one-layer LSTM decoder with Bahdanau attention runs the fused teacher-forced loop with its hand-written
backward pass (``mt.fast.decoder_loop``); other shapes run the step loop below, with the embedding projections of
all steps in one multiply and the dropout masks of all steps drawn at once.
Search: each step's input projection from a table once that pays (``mt.fast.input_table``), additive attention in
cache-sized blocks (``mt.fast.attention``), tanh through sigmoid, and the output layer's n best tokens without the
(B, V) log-probabilities (``mt.fast.top_tokens``), their candidates found at lower precision with
``decode.candidates=approximate``.

What search derives from the weights (the input table, the int8 copy of the output layer) is kept between
batches and forgotten when the weights may change: when the decoder is set to training mode (optimizer steps
happen there) and when weights are loaded into it; a weight changed in place in evaluation mode by anything else
is noticed by its version counter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from mt.config import ModelConfig
from mt.fast import recurrent
from mt.fast.activations import tanh
from mt.fast.attention import search_scores
from mt.fast.decoder_loop import Workspace, fused_lstm_attention_loop
from mt.fast.dropout import ByteDropout
from mt.fast.input_table import InputProjections
from mt.fast.top_tokens import Bf16Logits, Int8Logits, shortlist_for, top_log_probs
from mt.model.attention import BahdanauAttention, NoAttention, masked_softmax
from mt.model.decoder import Decoder, DecoderState, StepContext
from mt.model.encoder import EncoderOutput
from mt.profiling import ATTENTION, DECODER_LSTM, span

__all__ = ["CANDIDATES", "FastDecoder", "FastStepContext"]

CANDIDATES = ("approximate", "exact")  # decode.candidates: how search finds each row's best tokens


@dataclass
class FastStepContext(StepContext):
    """The reference's context, plus the step weights (cast once to the search precision) and the output layer's
    approximate logits (``mt.fast.top_tokens``) or None."""
    weights: list[torch.Tensor] | None = None
    shortlist: Bf16Logits | Int8Logits | None = None

    def index_select(self, index: torch.Tensor) -> FastStepContext:
        return FastStepContext(self.enc.index_select(index), self.keys.index_select(0, index), self.weights,
                               self.shortlist)


class FastDecoder(Decoder):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__(cfg, vocab_size)
        self.dropout = self.rnn.dropout = ByteDropout(cfg.dropout)
        self.candidates = "approximate"  # decode.candidates (``use_candidates``)
        self._workspaces = (Workspace(), Workspace())  # reused memory of the fused teacher-forced pass
        self._search_inputs = InputProjections()
        self._int8: tuple[int, Int8Logits] | None = None  # (the output weight's version, its int8 copy)

    def use_candidates(self, kind: str) -> None:
        """``decode.candidates``: approximate (a bf16 or int8 shortlist where there is one) or exact (fp32)."""
        if kind not in CANDIDATES:
            raise ValueError(f"decode.candidates must be one of {', '.join(CANDIDATES)}, got {kind!r}")
        self.candidates = kind

    def forget_derived(self) -> None:
        """Drop what search derived from the weights (they may change)."""
        self._search_inputs.forget()
        self._int8 = None

    def train(self, mode: bool = True) -> FastDecoder:
        if mode:
            self.forget_derived()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self.forget_derived()
        super()._load_from_state_dict(*args, **kwargs)

    def context(self, enc: EncoderOutput) -> FastStepContext:
        keys = self.attention.keys(enc.states)  # (B, S, A)
        weights = recurrent.step_weights(self.rnn)
        if torch.is_grad_enabled():
            return FastStepContext(enc, keys, weights)
        device = enc.states.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else enc.states.dtype
        if dtype != enc.states.dtype:
            # every search step multiplies the states and the step weights (a concatenation, which autocast's
            # weight cache does not hold) in the autocast dtype: cast them once here, not once per step
            enc = replace(enc, states=enc.states.to(dtype))
            weights = [w.to(dtype) for w in weights]
        return FastStepContext(enc, keys, weights, self.search_shortlist(dtype))

    def search_shortlist(self, dtype: torch.dtype) -> Bf16Logits | Int8Logits | None:
        """What search in ``dtype`` picks the output layer's candidates with: a bf16 or int8 multiply, or None
        (the fp32 multiply: decode.candidates=exact, a quantised output layer, a GPU)."""
        if self.candidates == "exact" or type(self.output) is not nn.Linear:
            return None
        weight = self.output.weight
        if dtype != torch.float32 or weight.device.type != "cpu":
            return shortlist_for(weight, dtype)
        if self._int8 is None or self._int8[0] != weight._version:
            self._int8 = (weight._version, shortlist_for(weight, dtype))
        return self._int8[1]

    def _advance(self, x_proj: torch.Tensor, state: DecoderState, ctx: FastStepContext,
                 drop: torch.Tensor | None = None) -> tuple[DecoderState, torch.Tensor | None]:
        """``Decoder.advance`` from layer 0's input projection x_proj (B, G*H) (``recurrent.project_input``);
        drop: an optional dropout mask (B, 2H) for [h; context]."""
        with span(DECODER_LSTM):
            h, c = recurrent.step(self.rnn, x_proj, state.feed, state.h, state.c, ctx.weights)
        top = h[-1]  # (B, H)
        with span(ATTENTION):
            if isinstance(self.attention, NoAttention):
                sentence = ctx.enc.final_h[-1]  # (B, H): the sentence vector at every step, for its K rows
                context, weights = sentence.repeat_interleave(top.shape[0] // sentence.shape[0], 0), None
            elif self._blocked_attention(top):
                context, weights = self._search_attention(top, ctx)
            else:
                context, weights = self.attention(top, ctx.keys, ctx.enc.states, ctx.enc.mask)  # (B*K, H), (B*K, S)
            joined = torch.cat([top, context], dim=1)  # (B, 2H)
            feed = tanh(self.combine(joined if drop is None else joined * drop))  # (B, H)
        return DecoderState(h, c, feed), weights

    def _blocked_attention(self, query: torch.Tensor) -> bool:
        return (not torch.is_grad_enabled() and query.device.type == "cpu"
                and isinstance(self.attention, BahdanauAttention) and type(self.attention.energy) is nn.Linear)

    def _search_attention(self, query: torch.Tensor, ctx: FastStepContext):
        """``BahdanauAttention.forward`` for search: the scores a block of sentences at a time."""
        keys = ctx.keys  # (B, S, A)
        q = self.attention.query_layer(query).view(keys.shape[0], -1, 1, keys.shape[2])  # (B, K, 1, A)
        scores = search_scores(keys, q, self.attention.energy.weight[0])  # (B, K, S), shifted by a constant per row
        weights = masked_softmax(scores, ctx.enc.mask.unsqueeze(1))  # (B, K, S)
        context = torch.bmm(weights, ctx.enc.states)  # (B, K, H)
        return context.flatten(0, 1), weights.flatten(0, 1)

    def forward(self, tgt_in: torch.Tensor, state: DecoderState, ctx: FastStepContext) -> torch.Tensor:
        """Teacher-forced pass, as ``Decoder.forward``: tgt_in (B, T) -> (B, T, H or E)."""
        x_proj, drops = self.teacher_inputs(tgt_in)
        if self._can_fuse():
            return self.fused_steps(x_proj, drops, state, ctx)
        return self.steps(x_proj, drops, state, ctx)

    def teacher_inputs(self, tgt_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tgt_in (B, T) -> layer 0's input projections of all steps (T, B, G*H), time-major (each step's slice
        contiguous, and so is the gradient the fused loop returns), and the dropout masks of all steps for
        [h; context] (T, B, 2H), drawn at once, or None."""
        x_proj = recurrent.project_input(self.rnn, self.dropout(self.embed(tgt_in.t())))  # (T, B, G*H)
        steps, batch = x_proj.shape[:2]
        active = self.dropout.active
        return x_proj, self.dropout.mask((steps, batch, self.combine.in_features), x_proj) if active else None

    def fused_steps(self, x_proj: torch.Tensor, drops: torch.Tensor | None, state: DecoderState,
                    ctx: FastStepContext) -> torch.Tensor:
        """The teacher-forced steps in one autograd function (``mt.fast.decoder_loop``) -> (B, T, H or E)."""
        device = x_proj.device.type
        low = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        with torch.autocast(device, enabled=False):  # the loop casts for its multiplies itself
            feeds = fused_lstm_attention_loop(
                x_proj, state.h[0], state.c[0], state.feed, ctx.keys, ctx.enc.states, ctx.enc.mask,
                ctx.weights[0], self.attention.query_layer.weight, self.attention.energy.weight,
                self.combine.weight, drops, self._workspaces, low)  # (B, T, H)
        return self.readout(feeds)  # autocast on again: a bf16 multiply where it was asked for

    def steps(self, x_proj: torch.Tensor, drops: torch.Tensor | None, state: DecoderState,
              ctx: FastStepContext) -> torch.Tensor:
        """The teacher-forced steps one by one, autograd through each -> (B, T, H or E)."""
        outputs = []
        for t, x_t in enumerate(x_proj.unbind(0)):  # unbind, not x_proj[t]: its backward is one stack
            state, _ = self._advance(x_t, state, ctx, None if drops is None else drops[t])
            outputs.append(state.feed)
        return self.readout(torch.stack(outputs, dim=1))  # (B, T, H) -> (B, T, H or E)

    def _can_fuse(self) -> bool:
        return (self.rnn.cell == "lstm" and self.rnn.layers == 1 and torch.is_grad_enabled()
                and isinstance(self.attention, BahdanauAttention))

    def step_vectors(self, prev: torch.Tensor, state: DecoderState, ctx: FastStepContext):
        """As ``Decoder.step_vectors``: prev (B,) -> the output layer's inputs (B, H or E), new state, attention."""
        x_proj = self._search_inputs(self.embed, self.rnn, prev)  # (B, G*H)
        state, weights = self._advance(x_proj, state, ctx)
        return self.readout(state.feed), state, weights  # bf16 under bf16 autocast

    def step(self, prev: torch.Tensor, state: DecoderState, ctx: FastStepContext):
        """As ``Decoder.step``: prev (B,) -> log-probabilities (B, V), new state, attention (B, S) or None."""
        vectors, state, weights = self.step_vectors(prev, state, ctx)
        with torch.autocast(vectors.device.type, enabled=False):
            logits = self.output(vectors.float())  # (B, V) fp32
        return torch.log_softmax(logits, dim=-1), state, weights

    def step_top(self, prev: torch.Tensor, state: DecoderState, ctx: FastStepContext, n: int):
        """As ``Decoder.step_top``: prev (B,) -> log-probabilities (B, n), ids (B, n), new state, attention."""
        if type(self.output) is not nn.Linear:  # e.g. a dynamically quantised layer: the plain route
            log_probs, state, weights = self.step(prev, state, ctx)
            return (*log_probs.topk(min(n, log_probs.shape[1]), dim=1), state, weights)
        vectors, state, weights = self.step_vectors(prev, state, ctx)
        with torch.autocast(vectors.device.type, enabled=False):
            # fp32 scores, block by block (from a bf16 or int8 shortlist where ctx has one)
            values, ids = top_log_probs(vectors, self.output.weight, n, shortlist=ctx.shortlist)
        return values, ids, state, weights
