"""Named time ranges for torch.profiler, which the fast backend (``mt.fast``) and the training step mark.
`python -m bench --profile` adds up each training step's time by these names, which answers "where does the time
go" in the model's own terms (the repository's bench/training.py, ``phase_split``).

A range is only opened while a profiler is recording; otherwise ``span`` returns a do-nothing context, so the
labels cost nothing in training and decoding.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

__all__ = ["ATTENTION", "CLIP", "DECODER_LSTM", "ENCODER", "OPTIMIZER", "OUTPUT_LOSS", "PHASES", "span"]

ENCODER = "mt.encoder"  # embeddings, recurrent layers (forward pass)
DECODER_LSTM = "mt.decoder_lstm"  # the decoder's recurrent step (forward and, in the fused loop, backward)
ATTENTION = "mt.attention"  # energies, softmax, context and the attentional layer tanh(W_c [h; ctx])
OUTPUT_LOSS = "mt.output_loss"  # output layer, softmax and cross-entropy (their gradients included)
CLIP = "mt.clip"  # gradient-norm clipping
OPTIMIZER = "mt.optimizer"  # the Adam update
PHASES = (ENCODER, DECODER_LSTM, ATTENTION, OUTPUT_LOSS, CLIP, OPTIMIZER)


def span(name: str):
    """``with span(ATTENTION): ...`` marks a range for the profiler; a no-op when no profiler is recording."""
    return torch.profiler.record_function(name) if torch.autograd._profiler_enabled() else nullcontext()
