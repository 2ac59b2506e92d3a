"""Dropout with cheap masks, in place of ``nn.Dropout``.

``nn.Dropout`` draws one random number per element, and the decoder needs a fresh (B, 2H) mask at every time
step. Here one 32-bit random number yields three 8-bit draws (its low 24 bits; ``random_`` leaves the top bit of
an int32 at zero), so the rate is rounded to a multiple of 1/256 (0.3 -> 77/256 = 0.3008), and the decoder draws
the masks of all its steps at once. Same expectation: kept units are scaled by 1 / keep rate. What it saves is
in docs/results.md ("Speed").
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ByteDropout"]


class ByteDropout(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p
        self.threshold = round(p * 256)  # drop when a random byte falls below this
        self.scale = 256.0 / (256 - self.threshold) if self.threshold < 256 else 0.0

    @property
    def active(self) -> bool:
        return self.training and self.threshold > 0

    def mask(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A scaled keep-mask of ``shape`` (0 or 1 / keep rate), dtype and device of ``like``. The decoder draws
        the masks of all its steps with one call."""
        n = math.prod(shape)
        words = torch.empty((n + 2) // 3, dtype=torch.int32, device=like.device).random_()
        draws = words.view(torch.uint8).view(-1, 4)[:, :3].reshape(-1)[:n]  # little-endian low three bytes
        keep = draws.view(shape) >= self.threshold
        return keep.to(like.dtype).mul_(self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x
        return x * self.mask(tuple(x.shape), x)

    def extra_repr(self) -> str:
        return f"p={self.p} (effective {self.threshold / 256:.4f})"
