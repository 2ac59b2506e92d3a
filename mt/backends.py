"""Which implementation computes the model, chosen once by one setting, ``model.backend``:

    reference  ``mt.model``: the model written to be read (nn.LSTM over packed sequences, a decoder step loop,
               torch's cross-entropy); what a learner reads and what the fast backend is tested against
    fast       ``mt.fast``: the same model and parameters with CPU speed paths (fused loops with hand-written
               backward passes, blocked attention and output layer, tables); equal to the reference within
               the tolerances that tests/test_backends.py states
    auto       fast

A checkpoint does not depend on the backend that trained it: both have the same parameters. ``mt translate``,
``mt eval`` and the bench take ``--backend`` (default: the run's ``model.backend``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mt.config import DecodeConfig, ModelConfig
from mt.errors import MTError
from mt.fast import FastLanguageModel, FastSeq2Seq, FastSummedLoss
from mt.model.lm import LanguageModel
from mt.model.loss import SummedLoss
from mt.model.seq2seq import Seq2Seq

__all__ = ["BACKENDS", "Backend", "resolve_backend", "use_decoding"]


@dataclass(frozen=True)
class Backend:
    name: str
    translator: type[Seq2Seq]
    language_model: type[LanguageModel]
    loss: type[SummedLoss]

    def build_model(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int, init_weights: bool = True) -> Seq2Seq:
        """The translator of ``cfg`` (``Seq2Seq.build``), initialised unless its weights are about to be loaded."""
        return self.translator.build(cfg, src_vocab, tgt_vocab, init_weights)

    def build_language_model(self, cfg: ModelConfig, vocab_size: int, side: str,
                             init_weights: bool = True) -> LanguageModel:
        return self.language_model.build(cfg, vocab_size, side, init_weights)


BACKENDS = {"reference": Backend("reference", Seq2Seq, LanguageModel, SummedLoss),
            "fast": Backend("fast", FastSeq2Seq, FastLanguageModel, FastSummedLoss)}


def resolve_backend(choice: str) -> Backend:
    """``model.backend`` or ``--backend`` (auto | reference | fast) -> the backend."""
    name = "fast" if choice == "auto" else choice
    if name not in BACKENDS:
        raise MTError(f"unknown backend '{choice}'; valid: auto, {', '.join(BACKENDS)}")
    return BACKENDS[name]


def use_decoding(model, cfg: DecodeConfig) -> None:
    """Apply the decode settings that live in the model (``decode.candidates``) to it or to an ensemble's members;
    the reference always scores every candidate exactly."""
    for module in model.modules():
        if isinstance(module, FastSeq2Seq):
            module.use_candidates(cfg.candidates)
