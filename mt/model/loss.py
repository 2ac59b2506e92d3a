"""The one loss of every model: output layer and label-smoothed cross-entropy fused into one memory-light
autograd function, summed over the real (non-padding) target tokens.

``SummedLoss`` wraps a model whose forward pass returns the vectors before the output layer (the translator's
attentional vectors, the language model's hidden states) so that one call gives the summed loss of a batch:
what training, DistributedDataParallel and the benchmark run. ``validation_loss`` averages it (without label
smoothing) over validation batches.

The plain route (logits -> log_softmax -> NLL, then their backward passes) writes and re-reads several
(N, V) tensors, about 128 MB each for a 4,000-token batch with 8,000 pieces, and zero-fills another for the
NLL gradient. Here logits are made one row block at a time; the gradient (softmax - smoothed target) is formed
in place and immediately multiplied back into the input and weight gradients, so no (N, V) tensor outlives its
block. The loss is the last node of the graph, so computing the gradients during the forward pass is exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from mt.profiling import OUTPUT_LOSS, span
from mt.tokenizer import PAD_ID

__all__ = ["SummedLoss", "linear_cross_entropy", "validation_loss"]


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, smoothing: float, block: int,
                low: torch.dtype | None):
        """x: (N, H), weight: (V, H) fp32, target: (N,) -> summed label-smoothed cross-entropy, a scalar. ``low``
        (bf16): the three multiplies take bf16 inputs; softmax, loss and gradient sums stay fp32."""
        n, vocab = x.shape[0], weight.shape[0]
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_x = torch.empty_like(x) if want_grad else None
        grad_w = torch.zeros_like(weight) if want_grad else None
        total = x.new_zeros((), dtype=torch.float32)
        x_mm, w_mm = (x.to(low), weight.to(low)) if low else (x, weight)  # what the multiplies read
        # Two (block, V) buffers reused by every block (fresh ones would cost page faults): fp32 logits, and
        # under ``low`` the bf16 product / gradient
        rows = min(block, n)
        buf = x.new_empty(rows, vocab)
        buf_mm = x_mm.new_empty(rows, vocab) if low else buf
        if low and want_grad:  # the weight gradient of a block: bf16 product, its fp32 copy (V, H), reused
            prod, prod_full = w_mm.new_empty(weight.shape), torch.empty_like(weight)
        for start in range(0, n, block):
            xs, ts = x_mm[start:start + block], target[start:start + block]  # (n_b, H), (n_b,)
            logits = torch.mm(xs, w_mm.t(), out=buf_mm[:xs.shape[0]])  # (n_b, V)
            if low:
                logits = buf[:xs.shape[0]].copy_(logits)  # fp32
            picked = logits.gather(1, ts.unsqueeze(1)).squeeze(1)  # (n_b,)
            row_sum = logits.sum(dim=1)  # (n_b,)
            top = logits.amax(dim=1, keepdim=True)  # (n_b, 1)
            probs = logits.sub_(top).exp_()  # in place: unnormalised softmax (n_b, V)
            norm = probs.sum(dim=1)  # (n_b,)
            lse = top.squeeze(1) + norm.log()  # (n_b,)
            # loss = lse - (1 - eps) * z_target - eps / V * sum_j z_j   (PyTorch's label smoothing)
            total += (lse - (1.0 - smoothing) * picked - (smoothing / vocab) * row_sum).sum()
            if want_grad:
                grad = probs.mul_(norm.reciprocal_().unsqueeze(1))  # softmax - smoothed one-hot, in place
                if smoothing:
                    grad.sub_(smoothing / vocab)
                grad.scatter_add_(1, ts.unsqueeze(1), grad.new_full((ts.shape[0], 1), -(1.0 - smoothing)))
                if low:
                    grad = buf_mm[:xs.shape[0]].copy_(grad)
                grad_x[start:start + block] = grad @ w_mm  # (n_b, H)
                if low:
                    grad_w.add_(prod_full.copy_(torch.mm(grad.t(), xs, out=prod)))  # (V, H): fp32 sum over blocks
                else:
                    grad_w.addmm_(grad.t(), xs)  # (V, H)
        ctx.save_for_backward(grad_x, grad_w)
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_output, grad_w * grad_output, None, None, None, None


def linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0,
                         block: int = 512) -> torch.Tensor:
    """Summed label-smoothed cross-entropy of ``softmax(x @ weight.T)`` against ``target``. Under bf16 autocast
    the multiplies take bf16 inputs (fp32 accumulation); the softmax, the loss and the gradients are fp32."""
    if not torch.is_grad_enabled():  # no gradients wanted: the function would form them anyway (needs_input_grad)
        x, weight = x.detach(), weight.detach()
    device = x.device.type
    low = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    with torch.autocast(device, enabled=False), span(OUTPUT_LOSS):
        return _LinearCrossEntropy.apply(x.float(), weight.float(), target, float(smoothing), block, low)


class SummedLoss(nn.Module):
    """``model(*inputs)`` -> vectors (B, T, H); their loss against ``targets`` (B, T), padding left out.
    ``model.output_layer`` is the model's output projection (H -> V)."""

    def __init__(self, model: nn.Module, smoothing: float = 0.0):
        super().__init__()
        self.model, self.smoothing = model, smoothing

    def forward(self, *inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        vectors = self.model(*inputs)  # (B, T, H)
        real = targets != PAD_ID  # (B, T)
        # Only real tokens reach the output layer; logits are never held for the whole batch.
        return linear_cross_entropy(vectors[real], self.model.output_layer.weight, targets[real], self.smoothing)


@torch.no_grad()
def validation_loss(model: nn.Module, batches: Iterable) -> tuple[float, float]:
    """Mean per-token cross-entropy (no label smoothing) over ``batches`` (each with ``model_inputs``,
    ``targets``, ``n_tokens``, already on the model's device), and the perplexity."""
    was_training = model.training
    model.eval()
    loss, total, tokens = SummedLoss(model), 0.0, 0
    for b in batches:
        total += float(loss(*b.model_inputs, targets=b.targets))
        tokens += b.n_tokens
    model.train(was_training)
    mean = total / max(tokens, 1)
    return mean, math.exp(min(mean, 100.0))
