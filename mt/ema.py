"""An exponential moving average of the weights (Polyak averaging; Polyak & Juditsky 1992), kept beside the
trained weights: after every update, ``shadow = d * shadow + (1 - d) * weights``. The averaged model is often
better than the last weights, because it smooths out the noise of the last updates; Marian NMT trains its RNN
systems with it (``--exponential-smoothing``, Junczys-Dowmunt et al. 2018).

The decay ramps up as in TensorFlow's ``ExponentialMovingAverage(num_updates=...)``:
``d_t = min(decay, (1 + t) / (10 + t))`` after t updates, so the average covers roughly the last tenth of the
updates until ``decay`` caps it (0.9999: about the last 10,000). A fixed decay would either forget too fast on a
long run or, on a short one, still hold the random initial weights (0.999 keeps 5% of them after 3,000 updates).

Training never sees the average: the trainer validates it beside the weights it trains and keeps its best as
``best-ema.pt``, a candidate for the final model (``mt.selection``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["WeightAverage"]


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        self.model, self.decay, self.updates = model, decay, 0
        self._names = [name for name, _ in model.named_parameters()]  # tied weights appear once
        self._params = [p for _, p in model.named_parameters()]
        self.shadow = [p.detach().float().clone() for p in self._params]  # fp32, like the master weights

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """After an optimizer step: move the average towards the current weights (one fused pass)."""
        self.updates += 1
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self._params], 1.0 - self.current_decay())

    @contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block and its trained weights again after it."""
        trained = [p.detach().clone() for p in self._params]
        for p, s in zip(self._params, self.shadow):
            p.copy_(s)
        try:
            yield
        finally:
            for p, t in zip(self._params, trained):
                p.copy_(t)

    def model_state(self) -> dict[str, torch.Tensor]:
        """The model's state_dict with the averaged weights (tied weights under each of their names)."""
        with self.applied():
            return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates,
                "weights": {name: s for name, s in zip(self._names, self.shadow)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        weights = state["weights"]
        for i, name in enumerate(self._names):
            self.shadow[i] = weights[name].to(self.shadow[i].device, torch.float32).clone()
