"""The attentional recurrent decoder with input feeding (Luong et al. 2015).

At step t, with y_{t-1} the previous target token and a_{t-1} the previous attentional vector (zeros at t = 0):
    h_t = RNN([embed(y_{t-1}); a_{t-1}], h_{t-1})      input feeding: the step knows what it attended to before
    c_t, alpha_t = attention(h_t, encoder states)        context: the weighted mean of the source states
    a_t = tanh(W_c [h_t; c_t])                          the attentional vector
    p(y_t | y_<t, x) = softmax(W_out a_t)                (through a readout when the output layer is tied)
Training runs these steps with the reference target as y_{t-1} (teacher forcing, ``forward``); search runs one
step at a time on its own previous choices (``step``, ``step_top``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mt.config import ModelConfig
from mt.data.tokenizer import PAD_ID
from mt.model.attention import NoAttention, build_attention
from mt.model.encoder import EncoderOutput
from mt.model.recurrent import StackedRecurrent
from mt.model.tying import output_layers

__all__ = ["Decoder", "DecoderState", "StepContext"]


@dataclass
class DecoderState:
    h: list[torch.Tensor]  # L x (B, H)
    c: list[torch.Tensor] | None  # L x (B, H) for LSTM
    feed: torch.Tensor  # (B, H) the previous attentional vector a_{t-1}

    def index_select(self, index: torch.Tensor) -> DecoderState:
        pick = lambda xs: None if xs is None else [x.index_select(0, index) for x in xs]  # noqa: E731
        return DecoderState(pick(self.h), pick(self.c), self.feed.index_select(0, index))


@dataclass
class StepContext:
    """What every step of one batch reuses: the encoder output and its attention keys."""
    enc: EncoderOutput
    keys: torch.Tensor  # (B, S, A)

    def index_select(self, index: torch.Tensor) -> StepContext:
        return StepContext(self.enc.index_select(index), self.keys.index_select(0, index))


class Decoder(nn.Module):
    """Sizes, cell, attention, dropout and tying from ``cfg``; ``vocab_size`` target pieces."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        hidden = cfg.hidden_dim
        self.embed = nn.Embedding(vocab_size, cfg.emb_dim, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(cfg.dropout)
        self.rnn = StackedRecurrent(cfg.cell, cfg.emb_dim, hidden, hidden, cfg.layers, cfg.dropout)
        self.attention = build_attention(cfg.attention, hidden)
        self.combine = nn.Linear(2 * hidden, hidden, bias=False)  # W_c
        # readout: H -> E when the output layer is tied to the (V, E) embeddings and E != H, else nothing
        self.readout, self.output = output_layers(self.embed, hidden, cfg.tie_embeddings)

    def context(self, enc: EncoderOutput) -> StepContext:
        return StepContext(enc, self.attention.keys(enc.states))  # keys (B, S, A)

    def advance(self, x: torch.Tensor, state: DecoderState, ctx: StepContext) -> tuple[DecoderState, torch.Tensor | None]:
        """One step from x (B, E), the embedding of the previous token -> the new state (its ``feed`` is a_t) and
        the attention weights (B, S), or None without attention. The rows may be K per sentence of ``ctx`` (beam
        search's hypotheses, consecutive), which share its encoder states."""
        h, c = self.rnn(torch.cat([x, state.feed], dim=1), state.h, state.c)  # input feeding: (B, E + H) in
        top = h[-1]  # (B, H)
        if isinstance(self.attention, NoAttention):
            sentence = ctx.enc.final_h[-1]  # (B, H): the sentence vector at every step, for its K rows
            context, weights = sentence.repeat_interleave(top.shape[0] // sentence.shape[0], 0), None
        else:
            context, weights = self.attention(top, ctx.keys, ctx.enc.states, ctx.enc.mask)  # (B*K, H), (B*K, S)
        feed = torch.tanh(self.combine(self.dropout(torch.cat([top, context], dim=1))))  # (B, H)
        return DecoderState(h, c, feed), weights

    def forward(self, tgt_in: torch.Tensor, state: DecoderState, ctx: StepContext) -> torch.Tensor:
        """Teacher-forced pass. tgt_in: (B, T) ids starting with BOS -> the output layer's inputs (B, T, H): the
        attentional vectors (or (B, T, E) through the readout of tied embeddings). Gradients flow back through
        every step's state to the steps before it (backpropagation through time) and into the encoder."""
        embedded = self.dropout(self.embed(tgt_in))  # (B, T, E)
        feeds = []
        for x in embedded.unbind(1):  # T x (B, E)
            state, _ = self.advance(x, state, ctx)
            feeds.append(state.feed)
        return self.readout(torch.stack(feeds, dim=1))  # (B, T, H) -> (B, T, H or E)

    def step_vectors(self, prev: torch.Tensor, state: DecoderState, ctx: StepContext):
        """prev: (B,) last tokens -> the output layer's inputs (B, H or E), new state, attention (B, S) or None."""
        state, weights = self.advance(self.embed(prev), state, ctx)
        return self.readout(state.feed), state, weights

    def step(self, prev: torch.Tensor, state: DecoderState, ctx: StepContext):
        """Search step. prev: (B,) last tokens -> log-probabilities (B, V), new state, attention (B, S) or None."""
        vectors, state, weights = self.step_vectors(prev, state, ctx)  # (B, H or E)
        # The logits in fp32 whatever the decoding precision: a bf16 logit keeps 8 bits (about 0.06 at 10), which
        # moves close choices (docs/results.md, "Decoding precision")
        with torch.autocast(vectors.device.type, enabled=False):
            logits = self.output(vectors.float())  # (B, V)
        return torch.log_softmax(logits, dim=-1), state, weights

    def step_top(self, prev: torch.Tensor, state: DecoderState, ctx: StepContext, n: int):
        """Search step for the n best continuations. prev: (B,) -> log-probabilities (B, n) and ids (B, n) of each
        row's n most likely tokens, best first, new state, attention (B, S) or None."""
        log_probs, state, weights = self.step(prev, state, ctx)
        return (*log_probs.topk(min(n, log_probs.shape[1]), dim=1), state, weights)
