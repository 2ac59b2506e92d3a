"""tanh through sigmoid on the CPU: tanh(x) = 2 * sigmoid(2x) - 1.

torch's CPU tanh kernel is several times slower than its sigmoid kernel, and the attention energies of every
decoder step are the largest tanh in the model (docs/results.md, "Speed"). The identity is exact in real
numbers; in fp32 it is within 2e-7 of torch.tanh (absolute). bf16 tensors and GPUs use torch.tanh as it is: in
bf16 the identity doubles the rounding error without a measurable gain.
"""

from __future__ import annotations

import torch

__all__ = ["half_tanh_of_sum", "tanh", "tanh_", "uses_torch_tanh"]


def uses_torch_tanh(x: torch.Tensor) -> bool:
    """torch.tanh on GPUs and for bf16; the identity for CPU tensors of other types."""
    return x.device.type != "cpu" or x.dtype == torch.bfloat16


def tanh_(x: torch.Tensor) -> torch.Tensor:
    """tanh in place, for tensors autograd does not track (sigmoid's backward would need the overwritten output)."""
    if uses_torch_tanh(x):
        return x.tanh_()
    return x.mul_(2).sigmoid_().mul_(2).sub_(1)


def tanh(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """tanh into a new tensor (or ``out``, which autograd must not track); differentiable when out is None."""
    if uses_torch_tanh(x):
        return torch.tanh(x, out=out)
    if out is None and torch.is_grad_enabled() and x.requires_grad:
        return torch.sigmoid(x * 2) * 2 - 1
    return torch.mul(x, 2, out=out).sigmoid_().mul_(2).sub_(1)


def half_tanh_of_sum(twice_a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """s = sigmoid(2 (a + b)) = (1 + tanh(a + b)) / 2 into out, in one pass, from 2a (computed once by the caller)
    and b (broadcast). For additive attention this is tanh with its affine parts folded into the other factors:
    v^T tanh(x) = (2v)^T s - sum(v), where the constant -sum(v) drops out of a softmax, and
    d tanh(x) / dx = 4 s (1 - s)."""
    return torch.add(twice_a, b, alpha=2, out=out).sigmoid_()
