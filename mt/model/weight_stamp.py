"""When weights have changed: the stamp that caches of what search derives from weights (the int8 copy of the
output layer, the table of input projections) are kept under.

A tensor's ``_version`` counts its in-place changes (``add_``, ``copy_``, ``load_state_dict``), but torch's fused
optimizers (``Adam(fused=True)``, which training uses) write parameters without counting: a cache keyed on the
version alone kept the weights of the first validation for the whole run. So every optimizer step of the process
is counted too, by a global optimizer hook.
"""

from __future__ import annotations

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

__all__ = ["stamp"]

_optimizer_steps = 0


def _count_step(optimizer, args, kwargs) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


register_optimizer_step_post_hook(_count_step)


def stamp(*tensors: torch.Tensor) -> tuple:
    """What to compare to know that ``tensors`` are the same, unchanged: equal stamps, unchanged weights."""
    return (_optimizer_steps, *((id(t), t._version) for t in tensors))
