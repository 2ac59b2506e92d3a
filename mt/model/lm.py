"""A recurrent language model (next-subword prediction) whose weights fit a translator's encoder or decoder.

Pre-training the recurrent layers on plentiful monolingual text and then fine-tuning them on scarce parallel
text is an old, effective trick for RNN translators (Ramachandran et al. 2017, "Unsupervised Pretraining for
Sequence to Sequence Learning"). The LM here uses the translator's own cell, embedding size, layer count and
tokenizer; its parameter names follow ``nn.LSTM`` (``rnn.weight_ih_l0`` ...), like the decoder's
``StackedRecurrent`` and the encoder's forward direction, so ``mt.recipes.transfer`` can copy them one to one.

Sizes: a target-side LM has the decoder's hidden size H; a source-side LM has the size of one encoder
direction (H/2 with a bidirectional encoder), since it initialises the forward direction.
"""

from __future__ import annotations

import torch
from torch import nn

from mt.config import ModelConfig
from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from mt.model.cells import RNN_CLASSES
from mt.model.init import initialize
from mt.model.tying import output_layers

__all__ = ["LanguageModel", "build_language_model", "lm_hidden_dim"]


class LanguageModel(nn.Module):
    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, layers: int = 1, cell: str = "lstm",
                 dropout: float = 0.0, tie_embeddings: bool = False):
        super().__init__()
        self.cell = cell
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        # Unidirectional and right-padded: padding comes after every real token, so it cannot change any
        # real position's state and no packing is needed.
        self.rnn = RNN_CLASSES[cell](emb_dim, hidden_dim, num_layers=layers, batch_first=True,
                              dropout=dropout if layers > 1 else 0.0)
        # readout: H -> E when the output layer is tied to the (V, E) embeddings and E != H, else nothing
        self.readout, self.output = output_layers(self.embed, hidden_dim, tie_embeddings)

    @classmethod
    def build(cls, cfg: ModelConfig, vocab_size: int, side: str, init_weights: bool = True) -> LanguageModel:
        """The LM that fits the translator of ``cfg`` on ``side`` (src: its encoder, tgt: its decoder),
        initialised (``mt.model.init``) unless its weights are about to be loaded."""
        tie = cfg.tie_embeddings and side == "tgt"
        lm = cls(vocab_size, cfg.emb_dim, lm_hidden_dim(cfg, side), cfg.layers, cfg.cell, cfg.dropout, tie)
        if init_weights:
            initialize(lm)
        return lm

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, T) -> the output layer's inputs (B, T, H), or (B, T, E) through a tied readout."""
        return self.readout(self.run(ids)[0])

    def run(self, ids: torch.Tensor, state=None):
        """ids: (B, T), the recurrent state after the previous tokens (None: start) -> (B, T, H), the new state."""
        out, state = self.rnn(self.dropout(self.embed(ids)), state)  # (B, T, H)
        return self.dropout(out), state

    @property
    def output_layer(self) -> nn.Linear:
        return self.output

    @torch.no_grad()
    def generate(self, prompt: list[int], max_len: int = 50, temperature: float = 1.0, top_k: int = 0,
                 generator: torch.Generator | None = None) -> list[int]:
        """Sample a continuation of ``prompt`` (ids, BOS is added) until EOS or ``max_len`` new tokens.

        ``temperature`` 0 picks the most likely token each step; ``top_k`` > 0 samples among the k best."""
        self.eval()
        device = self.output.weight.device
        hidden, state = self.run(torch.tensor([[BOS_ID, *prompt]], device=device))  # (1, P+1, H)
        new: list[int] = []
        for _ in range(max_len):
            logits = self.output(self.readout(hidden[:, -1])).squeeze(0).float()  # (V,)
            logits[PAD_ID] = logits[BOS_ID] = float("-inf")
            if temperature <= 0:
                token = int(logits.argmax())
            else:
                if top_k > 0:
                    kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                    logits[logits < kth] = float("-inf")
                probs = torch.softmax(logits / temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            if token == EOS_ID:
                break
            new.append(token)
            hidden, state = self.run(torch.tensor([[token]], device=device), state)  # (1, 1, H)
        return new

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def lm_hidden_dim(cfg: ModelConfig, side: str) -> int:
    """The LM hidden size that matches the translator: the decoder's H, or one encoder direction's."""
    if side == "tgt":
        return cfg.hidden_dim
    return cfg.hidden_dim // (2 if cfg.bidirectional else 1)


def build_language_model(cfg: ModelConfig, vocab_size: int, side: str, init_weights: bool = True) -> LanguageModel:
    """The reference LM (``mt.backends`` builds the one ``model.backend`` chooses)."""
    return LanguageModel.build(cfg, vocab_size, side, init_weights)
