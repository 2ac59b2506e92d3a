"""The translation model: encoder, bridge and attentional decoder, built from the model config."""

from __future__ import annotations

import torch
from torch import nn

from mt.config import ModelConfig
from mt.errors import MTError
from mt.model.decoder import Decoder, DecoderState, StepContext
from mt.model.encoder import Bridge, Encoder, EncoderOutput
from mt.model.init import initialize

__all__ = ["Seq2Seq", "build_model"]


class Seq2Seq(nn.Module):
    encoder_class: type[Encoder] = Encoder  # the parts ``build`` makes (a backend makes its own: mt.fast)
    decoder_class: type[Decoder] = Decoder

    def __init__(self, encoder: Encoder, bridge: Bridge, decoder: Decoder):
        super().__init__()
        self.encoder, self.bridge, self.decoder = encoder, bridge, decoder

    @classmethod
    def build(cls, cfg: ModelConfig, src_vocab: int, tgt_vocab: int, init_weights: bool = True) -> Seq2Seq:
        """The model of ``cfg`` for vocabularies of ``src_vocab`` and ``tgt_vocab`` pieces, initialised
        (``mt.model.init``) unless its weights are about to be loaded (``init_weights=False``)."""
        encoder = cls.encoder_class(cfg, src_vocab)
        decoder = cls.decoder_class(cfg, tgt_vocab)
        if cfg.share_embeddings:  # one (V, E) matrix for source, target (and, tied, the output layer)
            if src_vocab != tgt_vocab:
                raise MTError(f"model.share_embeddings needs one vocabulary for both sides, but the source has "
                              f"{src_vocab} pieces and the target {tgt_vocab} (prepare the data with "
                              "data.joint_vocab=true)")
            encoder.embed = decoder.embed
        model = cls(encoder, Bridge(cfg.hidden_dim, lstm=cfg.cell == "lstm"), decoder)
        if init_weights:
            initialize(model)
        return model

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> tuple[StepContext, DecoderState]:
        """src: (B, S), src_lens: (B,) -> what the decoder needs at every step, and its initial state."""
        enc: EncoderOutput = self.encoder(src, src_lens)
        h0, c0 = self.bridge(enc)  # (L, B, H) each
        feed = enc.states.new_zeros(enc.states.shape[0], enc.states.shape[2])  # (B, H): no attentional vector yet
        state = DecoderState(list(h0.unbind(0)), None if c0 is None else list(c0.unbind(0)), feed)
        return self.decoder.context(enc), state

    def forward(self, src: torch.Tensor, src_lens: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced pass -> the output layer's inputs (B, T, H or E); ``self.output_layer`` turns them into
        logits."""
        ctx, state = self.encode(src, src_lens)
        return self.decoder(tgt_in, state, ctx)

    def step(self, prev: torch.Tensor, state: DecoderState, ctx: StepContext):
        """One search step (``mt.decode.search.SearchModel``): prev (B,) -> log-probabilities (B, V), new state,
        attention (B, S) or None."""
        return self.decoder.step(prev, state, ctx)

    def step_vectors(self, prev: torch.Tensor, state: DecoderState, ctx: StepContext):
        """One search step up to the output layer: prev (B,) -> its inputs (B, H or E), new state, attention (B, S)
        or None (a lexical shortlist multiplies them with a few rows of ``output_layer``)."""
        return self.decoder.step_vectors(prev, state, ctx)

    def step_top(self, prev: torch.Tensor, state: DecoderState, ctx: StepContext, n: int):
        """One search step for the n best continuations of each row: log-probabilities (B, n), ids (B, n), new
        state, attention (B, S) or None."""
        return self.decoder.step_top(prev, state, ctx, n)

    @property
    def output_layer(self) -> nn.Linear:
        """(H or E) -> V: turns the vectors of ``forward`` into logits."""
        return self.decoder.output

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int, init_weights: bool = True) -> Seq2Seq:
    """The reference model (``mt.backends.build_model`` builds the one ``model.backend`` chooses)."""
    return Seq2Seq.build(cfg, src_vocab, tgt_vocab, init_weights)
