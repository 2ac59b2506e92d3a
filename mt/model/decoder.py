"""Attentional recurrent decoder with input feeding (Luong et al. 2015).

At step t: the recurrent cell reads [y_{t-1} embedding; attentional vector of t-1] and gives h_t; attention
over the encoder states with query h_t gives the context c_t; the attentional vector is
a_t = tanh(W_c [h_t; c_t]), fed to the output layer and to the next step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from mt.config import ModelConfig
from mt.data.tokenizer import PAD_ID
from mt.model import top_tokens
from mt.model.activations import tanh
from mt.model.attention import BahdanauAttention, NoAttention, build_attention
from mt.model.dropout import ByteDropout
from mt.model.encoder import EncoderOutput
from mt.model.fused_decoder import Workspace, fused_lstm_attention_loop
from mt.model.init import init_linear
from mt.model.input_table import InputProjections
from mt.model.recurrent import StackedRecurrent
from mt.model.top_tokens import Bf16Logits, Int8Logits, top_log_probs
from mt.model.tying import init_output_layers, output_layers
from mt.profiling import ATTENTION, DECODER_LSTM, span

__all__ = ["Decoder", "DecoderState", "StepContext"]


@dataclass
class DecoderState:
    h: list[torch.Tensor]  # L x (B, H)
    c: list[torch.Tensor] | None  # L x (B, H) for LSTM
    feed: torch.Tensor  # (B, H) previous attentional vector

    def index_select(self, index: torch.Tensor) -> DecoderState:
        pick = lambda xs: None if xs is None else [x.index_select(0, index) for x in xs]  # noqa: E731
        return DecoderState(pick(self.h), pick(self.c), self.feed.index_select(0, index))


@dataclass
class StepContext:
    """What every step of one batch reuses: the encoder output, its attention keys, the fused step weights."""
    enc: EncoderOutput
    keys: torch.Tensor  # (B, S, A)
    weights: list[torch.Tensor]
    shortlist: Bf16Logits | Int8Logits | None = None  # the output layer's approximate logits, for search

    def index_select(self, index: torch.Tensor) -> StepContext:
        return StepContext(self.enc.index_select(index), self.keys.index_select(0, index), self.weights,
                           self.shortlist)


class Decoder(nn.Module):
    fused = True  # teacher-forced passes of 1-layer LSTM + Bahdanau decoders use mt.model.fused_decoder

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        """Sizes, cell, attention, dropout and tying from ``cfg`` (``cell``, ``attention``, ``emb_dim``,
        ``hidden_dim``, ``layers``, ``dropout``, ``tie_embeddings``); ``vocab_size`` target pieces."""
        super().__init__()
        hidden = cfg.hidden_dim
        self.cell = cfg.cell
        self.embed = nn.Embedding(vocab_size, cfg.emb_dim, padding_idx=PAD_ID)
        self.dropout = ByteDropout(cfg.dropout)
        self.rnn = StackedRecurrent(cfg.cell, cfg.emb_dim, hidden, hidden, cfg.layers, cfg.dropout)
        self.attention = build_attention(cfg.attention, hidden)
        self.combine = nn.Linear(2 * hidden, hidden, bias=False)
        # readout: H -> E when the output layer is tied to the (V, E) embeddings and E != H, else nothing
        self.readout, self.output = output_layers(self.embed, hidden, cfg.tie_embeddings)
        init_linear(self.combine)
        nn.init.normal_(self.embed.weight, std=cfg.emb_dim ** -0.5)
        with torch.no_grad():
            self.embed.weight[PAD_ID].zero_()
        self._workspaces = (Workspace(), Workspace())  # reused memory of the fused teacher-forced pass
        self._search_inputs = InputProjections()  # search's input projections, from a table once that pays
        init_output_layers(self.readout, self.output, self.embed)

    def context(self, enc: EncoderOutput) -> StepContext:
        keys = self.attention.keys(enc.states)  # (B, S, A)
        weights = self.rnn.step_weights()
        device = enc.states.device.type
        if torch.is_grad_enabled():
            return StepContext(enc, keys, weights)
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else enc.states.dtype
        if dtype != enc.states.dtype:
            # search: every step multiplies the states and the step weights (a concatenation, which autocast's
            # weight cache does not hold) in the autocast dtype; cast them once here, not once per step (the
            # same numbers: a cast is a cast).
            enc = replace(enc, states=enc.states.to(dtype))
            weights = [w.to(dtype) for w in weights]
        return StepContext(enc, keys, weights, self.search_shortlist(dtype))

    def search_shortlist(self, dtype: torch.dtype) -> Bf16Logits | Int8Logits | None:
        """What search in ``dtype`` picks the output layer's candidates with: a bf16 or int8 multiply
        (``mt.model.top_tokens``), or None (the fp32 multiply: e.g. a quantised output layer, a GPU)."""
        return top_tokens.shortlist_for(self.output.weight, dtype) if type(self.output) is nn.Linear else None

    def _advance(self, x_proj: torch.Tensor, state: DecoderState, ctx: StepContext, drop: torch.Tensor | None = None):
        """One step from layer-0 input projection x_proj (B, G*H) -> new state, attention weights (B, S) or None.
        drop: an optional dropout mask (B, 2H) for [h; context]. The rows may be K per sentence of ``ctx``
        (beam search's hypotheses, consecutive), which share its encoder states."""
        with span(DECODER_LSTM):
            h, c = self.rnn.step(x_proj, state.feed, state.h, state.c, ctx.weights)
        top = h[-1]  # (B, H)
        with span(ATTENTION):
            if isinstance(self.attention, NoAttention):
                sentence = ctx.enc.final_h[-1]  # (B, H): the sentence vector at every step, for its K rows
                context, weights = sentence.repeat_interleave(top.shape[0] // sentence.shape[0], 0), None
            else:
                context, weights = self.attention(top, ctx.keys, ctx.enc.states, ctx.enc.mask)  # (B*K, H), (B*K, S)
            joined = torch.cat([top, context], dim=1)  # (B, 2H)
            feed = tanh(self.combine(joined if drop is None else joined * drop))  # (B, H)
        return DecoderState(h, c, feed), weights

    def forward(self, tgt_in: torch.Tensor, state: DecoderState, ctx: StepContext) -> torch.Tensor:
        """Teacher-forced pass. tgt_in: (B, T) ids starting with BOS -> the output layer's inputs (B, T, H), the
        attentional vectors (or (B, T, E) through the readout of tied embeddings)."""
        # Time-major (T, B, ...): each step's slice is contiguous, and so is the gradient the fused loop returns.
        x_proj = self.rnn.project_input(self.dropout(self.embed(tgt_in.t())))  # (T, B, G*H)
        steps, batch = x_proj.shape[:2]
        drops = self.dropout.mask((steps, batch, self.combine.in_features), x_proj) if self.dropout.active \
            else None  # (T, B, 2H): the masks of all steps, drawn at once
        if self._can_fuse(x_proj):
            device = x_proj.device.type
            low = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
            with torch.autocast(device, enabled=False):  # the loop casts for its multiplies itself
                feeds = fused_lstm_attention_loop(
                    x_proj, state.h[0], state.c[0], state.feed, ctx.keys, ctx.enc.states, ctx.enc.mask,
                    ctx.weights[0], self.attention.query_layer.weight, self.attention.energy.weight,
                    self.combine.weight, drops, self._workspaces, low)  # (B, T, H)
            return self.readout(feeds)  # autocast on again: a bf16 multiply where it was asked for
        outputs = []
        for t, x_t in enumerate(x_proj.unbind(0)):  # unbind, not x_proj[t]: its backward is one stack
            state, _ = self._advance(x_t, state, ctx, None if drops is None else drops[t])
            outputs.append(state.feed)
        return self.readout(torch.stack(outputs, dim=1))  # (B, T, H) -> (B, T, H or E)

    def _can_fuse(self, x: torch.Tensor) -> bool:
        return (self.fused and self.cell == "lstm" and self.rnn.layers == 1 and torch.is_grad_enabled()
                and isinstance(self.attention, BahdanauAttention))

    def _step_vectors(self, prev: torch.Tensor, state: DecoderState, ctx: StepContext):
        """prev: (B,) last tokens -> the output layer's inputs (B, H or E), new state, attention (B, S) or None."""
        x_proj = self._search_inputs(self.embed, self.rnn, prev)  # (B, G*H)
        state, weights = self._advance(x_proj, state, ctx)
        return self.readout(state.feed), state, weights  # bf16 under bf16 autocast

    def step(self, prev: torch.Tensor, state: DecoderState, ctx: StepContext):
        """Search step. prev: (B,) last tokens -> log-probabilities (B, V), new state, attention (B, S) or None."""
        vectors, state, weights = self._step_vectors(prev, state, ctx)
        # The logits in fp32 whatever the decoding precision: a bf16 logit keeps 8 bits (~0.06 at 10), which cost
        # 0.1-0.2 BLEU on Multi30k validation (docs/results.md, "Decoding precision")
        with torch.autocast(vectors.device.type, enabled=False):
            logits = self.output(vectors.float())  # (B, V)
        return torch.log_softmax(logits, dim=-1), state, weights

    def step_top(self, prev: torch.Tensor, state: DecoderState, ctx: StepContext, n: int):
        """Search step for the n best continuations. prev: (B,) -> log-probabilities (B, n) and ids (B, n) of each
        row's n most likely tokens, new state, attention (B, S) or None."""
        if type(self.output) is not nn.Linear:  # e.g. a dynamically quantised layer: the plain route
            log_probs, state, weights = self.step(prev, state, ctx)
            return (*log_probs.topk(min(n, log_probs.shape[1]), dim=1), state, weights)
        vectors, state, weights = self._step_vectors(prev, state, ctx)
        with torch.autocast(vectors.device.type, enabled=False):
            # fp32 scores, block by block (from a bf16 or int8 shortlist where ctx has one)
            values, ids = top_log_probs(vectors, self.output.weight, n, shortlist=ctx.shortlist)
        return values, ids, state, weights
