"""Checkpoints: atomic writes, safe loading, and averaging.

A checkpoint is a dict of tensors and plain data (numbers, strings, lists, dicts), so it loads with
``torch.load(weights_only=True)``: no arbitrary unpickling. It is written atomically (``mt.files.atomic_write``),
so the previous good checkpoint survives a crash. Format 1 (docs/usage.md, "Files"):

    format            1
    model             the weights by parameter name (the same names in both backends)
    config            the resolved config; vocab: [source, target] vocabulary sizes; tokenizer_sha256
    progress, optimizer, schedule, rng, hooks, version   what a resumed run needs (training checkpoints)
    lm                a language model's metadata (mt pretrain); final: how final.pt was chosen
    sections          optional later additions, each {"version": N, ...} (``optional_section``)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from mt.errors import MTError
from mt.files import atomic_write

__all__ = ["check_weights", "FORMAT", "average_checkpoints", "average_last", "load_checkpoint", "optional_section", "save_checkpoint"]

log = logging.getLogger("mt")

FORMAT = 1


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f), what="checkpoint")


def check_weights(weights: Any, source: str, limit: int) -> None:
    """Weights read from a file someone else may have made: a mapping of names to tensors (an int8 entry: a mapping
    of "int8" and "scale" tensors) none of which claims more bytes than ``limit`` (the file's size): a tensor with
    zero strides can present a few stored bytes as gigabytes, which hashing or copying would then allocate."""
    if not isinstance(weights, dict) or not weights:
        raise MTError(f"{source}: 'model' must be a mapping of parameter names to tensors")
    for name, value in weights.items():
        tensors = value.items() if isinstance(value, dict) else [("", value)]
        for part, t in tensors:
            field = f"model.{name}{'.' + part if part else ''}"
            if not isinstance(name, str) or not isinstance(t, torch.Tensor):
                raise MTError(f"{source}: '{field}' is not a tensor")
            if t.numel() * t.element_size() > limit or t.untyped_storage().nbytes() > limit:
                raise MTError(f"{source}: '{field}' claims {t.numel() * t.element_size():,} bytes in a file of "
                              f"{limit:,} (a crafted tensor?)")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MTError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, bad pickle, foreign file: one line for the user
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MTError(f"checkpoint {path} is damaged or not a checkpoint ({reason[:200]})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise MTError(f"checkpoint {path} is not an mt checkpoint (format {FORMAT})")
    if state.get("format") != FORMAT:
        raise MTError(f"checkpoint {path} has checkpoint format {state.get('format')}; this version of mt reads "
                      f"format {FORMAT}")
    check_weights(state["model"], f"checkpoint {path}", path.stat().st_size)
    return state


def optional_section(state: dict[str, Any], name: str, version: int) -> dict[str, Any] | None:
    """Section ``name`` of a checkpoint or model file if it holds one of ``version``, else None: what later versions
    add (a length distribution, a lexical table, a model card) comes as ``state["sections"][name]`` with its own
    version, so a reader that does not know a section, or knows another version of it, loads the rest."""
    section = state.get("sections", {}).get(name) if isinstance(state.get("sections"), dict) else None
    if isinstance(section, dict) and section.get("version") == version:
        return section
    if section is not None:
        log.warning("%s section of version %s ignored: this version of mt reads version %d", name,
                    section.get("version") if isinstance(section, dict) else "?", version)
    return None


def average_checkpoints(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the model weights of several checkpoints of one run. Names that share one tensor
    (tied embeddings) share the mean too, so the result is saved once, as the checkpoints were."""
    if not paths:
        raise MTError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    same_as: dict[str, str] = {}  # name -> the first name of the tensor it shares (in the first checkpoint)
    for path in paths:
        model = load_checkpoint(path)["model"]
        if total and model.keys() != total.keys():
            raise MTError(f"checkpoint {path} has different parameters from {paths[0]}")
        if not same_as:
            first: dict[tuple, str] = {}
            same_as = {name: first.setdefault((t.data_ptr(), t.shape, t.stride()), name) for name, t in model.items()}
        for name, tensor in model.items():
            dtypes[name] = tensor.dtype
            total[name] = total.get(name, 0) + tensor.double() if same_as[name] == name else 0
    means = {name: (t / len(paths)).to(dtypes[name]) for name, t in total.items() if same_as[name] == name}
    return {name: means[same_as[name]] for name in total}


def average_last(folder: Path, last: int, output: str = "averaged") -> tuple[list[Path], Path]:
    """``mt average``: the mean of the newest ``last`` kept checkpoints of a run's checkpoint folder (step-NNNNNNNN.pt,
    one per validation), saved there as OUTPUT.pt with the newest one's config. Returns the averaged paths and the
    result."""
    if last < 1:
        raise MTError(f"--last must be at least 1, got {last}")
    paths = sorted(Path(folder).glob("step-*.pt"))
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
