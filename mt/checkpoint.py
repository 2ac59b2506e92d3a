"""Checkpoints: atomic writes, safe loading, and averaging.

A checkpoint is a dict of tensors and plain data (numbers, strings, lists, dicts), so it loads with
``torch.load(weights_only=True)``: no arbitrary unpickling. It is written atomically (``mt.files.atomic_write``),
so the previous good checkpoint survives a crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mt.errors import MTError
from mt.files import atomic_write

__all__ = ["average_checkpoints", "average_last", "load_checkpoint", "save_checkpoint"]

FORMAT = 1


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f), what="checkpoint")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MTError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, bad pickle, foreign file: one line for the user
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MTError(f"checkpoint {path} is damaged or not a checkpoint ({reason[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise MTError(f"checkpoint {path} is not an mt checkpoint (format {FORMAT})")
    return state


def average_checkpoints(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the model weights of several checkpoints of one run."""
    if not paths:
        raise MTError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for path in paths:
        model = load_checkpoint(path)["model"]
        if total and model.keys() != total.keys():
            raise MTError(f"checkpoint {path} has different parameters from {paths[0]}")
        for name, tensor in model.items():
            dtypes[name] = tensor.dtype
            total[name] = total.get(name, 0) + tensor.double()
    return {name: (t / len(paths)).to(dtypes[name]) for name, t in total.items()}


def average_last(folder: Path, last: int, output: str = "averaged") -> tuple[list[Path], Path]:
    """``mt average``: the mean of the newest ``last`` kept checkpoints of a run's checkpoint folder (step-NNNNNNNN.pt,
    one per validation; epoch-NNN.pt in runs from before validation went by steps), saved there as OUTPUT.pt with
    the newest one's config. Returns the averaged paths and the result."""
    if last < 1:
        raise MTError(f"--last must be at least 1, got {last}")
    paths = sorted(Path(folder).glob("step-*.pt")) or sorted(Path(folder).glob("epoch-*.pt"))
    paths = paths[-last:]
    if len(paths) < last:
        raise MTError(f"{folder} has {len(paths)} kept checkpoint(s), fewer than --last {last} "
                      "(train with train.keep_checkpoints=N to keep them)")
    state = {k: v for k, v in load_checkpoint(paths[-1]).items() if k != "format"}
    state["model"] = average_checkpoints(paths)
    state["averaged"] = [p.name for p in paths]
    out = Path(folder) / f"{output}.pt"
    save_checkpoint(state, out)
    return paths, out
