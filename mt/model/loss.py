"""The loss of every model: label-smoothed cross-entropy of the output layer, summed over the real (non-padding)
target tokens, and R-Drop's consistency term.

``SummedLoss`` wraps a model whose forward pass returns the vectors before the output layer (the translator's
attentional vectors, the language model's hidden states) so that one call gives the summed loss of a batch:
what training, DistributedDataParallel and validation run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from mt.data.tokenizer import PAD_ID

__all__ = ["SummedLoss", "full_precision"]


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """x in fp32 at least: the bf16 logits of a bf16 multiply (autocast) go through softmax and the loss in fp32."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class SummedLoss(nn.Module):
    """``model(*inputs)`` -> vectors (B, T, H); their loss against ``targets`` (B, T), padding left out.
    ``model.output_layer`` is the model's output projection (H -> V). ``smoothing``: label smoothing (Szegedy et
    al. 2016). ``rdrop`` > 0: in training, R-Drop (Liang et al. 2021) with that weight on the symmetric KL."""

    def __init__(self, model: nn.Module, smoothing: float = 0.0, rdrop: float = 0.0):
        super().__init__()
        self.model, self.smoothing, self.rdrop = model, smoothing, rdrop

    def forward(self, *inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        real = targets != PAD_ID  # (B, T)
        weight = self.model.output_layer.weight  # (V, H)
        if self.rdrop and self.model.training and torch.is_grad_enabled():
            # every sentence twice in one pass (2B rows), so each copy draws its own dropout masks
            first, second = self.model(*(torch.cat([x, x]) for x in inputs)).chunk(2)  # (B, T, H) each
            return self.rdrop_loss(first[real], second[real], weight, targets[real])
        vectors = self.model(*inputs)  # (B, T, H)
        return self.cross_entropy(vectors[real], weight, targets[real])  # only real tokens reach the output layer

    def cross_entropy(self, x: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """x: (N, H) the output layer's inputs, weight: (V, H), target: (N,) -> the summed label-smoothed
        cross-entropy of softmax(x @ weight.T), a scalar (fp32 whatever the multiply's precision)."""
        logits = full_precision(F.linear(x, weight))  # (N, V)
        return F.cross_entropy(logits, target, label_smoothing=self.smoothing, reduction="sum")

    def rdrop_loss(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, target: torch.Tensor):
        """x1, x2: (N, H) the same N target tokens under two dropout masks -> sum over tokens of (CE(z1) +
        CE(z2)) / 2 + rdrop * (KL(p1 || p2) + KL(p2 || p1)) / 4, a scalar: the authors' fairseq criterion
        (cross-entropy summed over both passes + alpha x symmetric KL / 2) halved, so their alpha (5 for
        translation) means the same here."""
        log_p1 = torch.log_softmax(full_precision(F.linear(x1, weight)), dim=-1)  # (N, V)
        log_p2 = torch.log_softmax(full_precision(F.linear(x2, weight)), dim=-1)
        ce = (F.nll_loss(log_p1, target, reduction="sum") + F.nll_loss(log_p2, target, reduction="sum")) / 2
        if self.smoothing:  # PyTorch's label smoothing: (1 - eps) * NLL + eps * the mean over V of -log p
            uniform = -(log_p1.mean(dim=-1).sum() + log_p2.mean(dim=-1).sum()) / 2
            ce = (1 - self.smoothing) * ce + self.smoothing * uniform
        symmetric_kl = ((log_p1.exp() - log_p2.exp()) * (log_p1 - log_p2)).sum()  # KL(p1||p2) + KL(p2||p1)
        return ce + self.rdrop / 4 * symmetric_kl

    @torch.no_grad()
    def validation_loss(self, batches: Iterable) -> tuple[float, float]:
        """Mean per-token cross-entropy (no label smoothing, no R-Drop) over ``batches`` (each with
        ``model_inputs``, ``targets``, ``n_tokens``, on the model's device), and the perplexity."""
        was_training = self.model.training
        self.model.eval()
        plain, total, tokens = type(self)(self.model), 0.0, 0
        for b in batches:
            total += float(plain(*b.model_inputs, targets=b.targets))
            tokens += b.n_tokens
        self.model.train(was_training)
        mean = total / max(tokens, 1)
        return mean, math.exp(min(mean, 100.0))
