"""tanh through sigmoid on the CPU: tanh(x) = 2 * sigmoid(2x) - 1.

torch's CPU tanh kernel is several times slower than its sigmoid kernel (1.28M fp32 numbers, one thread, torch
2.13, AMD EPYC Zen 4 with avx512_bf16, no AMX, a training run sharing the cores: tanh 4.2-4.9 ms, sigmoid
0.5-0.7 ms, in place: 0.8-0.9 ms for all four passes below),
and the attention energies (S, B, A) of every decoder step are the largest tanh in the model. The identity is
exact in real numbers; in fp32 it is within 2e-7 of torch.tanh (absolute). bf16 tensors and GPUs use
torch.tanh as it is.
"""

from __future__ import annotations

import torch

__all__ = ["tanh", "tanh_", "uses_torch_tanh"]

VIA_SIGMOID = True  # False: torch.tanh everywhere (`python -m eval.bench --compare tanh` compares the two)


def uses_torch_tanh(x: torch.Tensor) -> bool:
    """torch.tanh on GPUs, and for bf16, where the identity doubles the rounding error (2x one bf16 step of the
    sigmoid) without a measurable gain: bf16 decoding was equally fast either way (docs/results.md, "Speed")."""
    return x.device.type != "cpu" or x.dtype == torch.bfloat16 or not VIA_SIGMOID


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
