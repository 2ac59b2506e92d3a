"""One file per model: ``mt export`` writes a trained model with everything needed to translate with it, so it can
be copied to another machine or attached to a release; ``mt translate --model FILE``, ``mt demo --model FILE`` and
``Translator.from_file(FILE)`` use it without the run folder or its data.

The file is a ``torch.save`` dict of tensors and plain data (it loads with ``weights_only=True``):

    format        "mt-model/1"
    model         the weights (``int8``: 2-D float matrices as int8 rows plus one fp32 scale per row)
    config, vocab the model's config and vocabulary sizes (as in a checkpoint)
    languages     {"src", "tgt"}
    tokenizer     {"src": bytes, "tgt": bytes or None (one joint model), "names"}: the SentencePiece models
    checksums     SHA-256 of the tokenizer models (as ``meta.json``'s ``tokenizer_sha256``) and of the weights
    training      step, epoch, minutes, best validation BLEU, how ``final.pt`` was chosen, the checkpoint's name
    evaluations   RUN/eval/*.json as ``mt eval`` wrote them (BLEU, chrF, their signatures), by name
    sections      optional later additions, each {"version": N, ...} (``mt.checkpoint.optional_section``):
                  ``lengths``: the training sources' mean length in subwords (``src_tokens_mean``, or None)
                  ``lexicon``: the lexical table of ``decode.lexical_shortlist`` (``mt.data.lexicon``)

The checksums are stored in the file they check: they detect a damaged copy, not a deliberate change.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from mt.checkpoint import check_weights, load_checkpoint
from mt.data.lexicon import run_lexicon
from mt.data.tokenizer import Tokenizer
from mt.errors import MTError
from mt.files import atomic_write
from mt.run import RunDir

__all__ = ["FORMAT", "export_model", "load_model_file", "model_file_tokenizer"]

FORMAT = "mt-model/1"


def export_model(run: RunDir, output: str | Path, checkpoint: str = "final", int8: bool = False) -> dict[str, Any]:
    """RUN's model (``checkpoint`` as in ``mt translate``) -> one file at ``output``; returns what was written
    (path, bytes, parameters)."""
    meta, path = run.meta(), run.model_path(checkpoint)
    state = load_checkpoint(path)
    names = [meta["src_model"], meta["tgt_model"]]
    blobs = [(run.data_dir / n).read_bytes() for n in names]
    weights = dict(state["model"])
    if int8:  # a tensor under several names (tied or shared embeddings) is quantised once and stored once
        done: dict[int, dict[str, torch.Tensor]] = {}
        weights = {k: done.setdefault(v.data_ptr(), _to_int8(v)) if _quantizable(v) else v for k, v in weights.items()}
    progress = state.get("progress", {})
    contents = {
        "format": FORMAT, "model": weights, "int8": int8, "config": state["config"], "vocab": list(state["vocab"]),
        "languages": {"src": meta["src"], "tgt": meta["tgt"]},
        "tokenizer": {"src": blobs[0], "tgt": None if names[0] == names[1] else blobs[1], "names": names},
        "checksums": {"tokenizer_sha256": meta["tokenizer_sha256"], "weights_sha256": _weights_sha256(weights)},
        "training": {"checkpoint": path.name, "step": progress.get("step"), "epoch": progress.get("epoch"),
                     "train_minutes": round(progress["train_seconds"] / 60, 1) if "train_seconds" in progress else None,
                     "best_val_bleu": progress.get("best_score"),
                     "final": state.get("final")},
        "evaluations": run.evaluations(),
        "sections": {"lengths": {"version": 1, "src_tokens_mean": run.sentence_tokens()},
                     "lexicon": run_lexicon(run).section()},
    }
    atomic_write(output, lambda f: torch.save(contents, f), what="model file")
    n_params = sum({v.data_ptr(): v.numel() for v in state["model"].values()}.values())
    return {"path": str(output), "bytes": Path(output).stat().st_size, "parameters": n_params, "int8": int8}


def load_model_file(path: str | Path) -> dict[str, Any]:
    """An exported file -> its dict with fp32 weights, checked against its checksums (one-line errors)."""
    path = Path(path)
    if not path.is_file():
        raise MTError(f"model file not found: {path}")
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, foreign or damaged file: one line for the user
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MTError(f"{path} is damaged or not a model file from `mt export` ({reason[:200]})") from None
    if not isinstance(contents, dict) or contents.get("format") != FORMAT:
        raise MTError(f"{path} is not a model file from `mt export` (format {FORMAT}); a checkpoint of a run "
                      "is used with --run RUN --checkpoint PATH")
    _check_schema(contents, str(path))
    check_weights(contents.get("model"), str(path), path.stat().st_size)  # before hashing touches every byte
    if _weights_sha256(contents["model"]) != contents["checksums"]["weights_sha256"]:
        raise MTError(f"{path}: the weights do not match their checksum (a damaged copy?)")
    tok = contents["tokenizer"]
    by_name = dict(zip(tok["names"], (tok["src"], tok["tgt"] if tok["tgt"] is not None else tok["src"])))
    digest = hashlib.sha256(b"".join(by_name[n] for n in sorted(by_name)))  # as data_prep's tokenizer checksum
    if digest.hexdigest() != contents["checksums"]["tokenizer_sha256"]:
        raise MTError(f"{path}: the tokenizer does not match its checksum (a damaged copy?)")
    if contents["int8"]:
        contents["model"] = {k: _from_int8(v) if isinstance(v, dict) else v for k, v in contents["model"].items()}
    return contents


# field -> (type(s) it must have, what the message calls it)
_SCHEMA: dict[str, tuple] = {
    "int8": (bool, "true or false"), "config": (dict, "a mapping"),
    "languages": (dict, "a mapping"), "languages.src": (str, "a language code"), "languages.tgt": (str, "a language code"),
    "tokenizer": (dict, "a mapping"), "tokenizer.src": (bytes, "bytes"), "tokenizer.tgt": ((bytes, type(None)), "bytes or null"),
    "tokenizer.names": (list, "a list of two file names"), "checksums": (dict, "a mapping"),
    "checksums.weights_sha256": (str, "a hex digest"), "checksums.tokenizer_sha256": (str, "a hex digest"),
    "training": (dict, "a mapping"), "evaluations": (dict, "a mapping"),
}


def _check_schema(contents: dict[str, Any], source: str) -> None:
    """Every field the loader reads, present and of its type, before any is used (one line naming the field); the
    model's own fields (``vocab``, ``config``, the weights' shapes) in ``mt.decode.translator.model_from_state``."""
    for field, (kinds, what) in _SCHEMA.items():
        value: Any = contents
        for part in field.split("."):
            if not isinstance(value, dict) or part not in value:
                raise MTError(f"{source}: field '{field}' is missing (not a model file from `mt export`, or damaged)")
            value = value[part]
        if not isinstance(value, kinds):
            raise MTError(f"{source}: field '{field}' must be {what}, got {type(value).__name__}")
    names = contents["tokenizer"]["names"]  # ``vocab`` and ``config`` are checked where models are built from them
    if len(names) != 2 or not all(isinstance(n, str) for n in names):
        raise MTError(f"{source}: field 'tokenizer.names' must be a list of two file names")


def model_file_tokenizer(contents: dict[str, Any], name: str) -> Tokenizer:
    return Tokenizer.from_bytes(contents["tokenizer"]["src"], contents["tokenizer"]["tgt"], name)


def _quantizable(t: torch.Tensor) -> bool:
    return t.is_floating_point() and t.dim() == 2


def _to_int8(t: torch.Tensor) -> dict[str, torch.Tensor]:
    """(R, C) float -> int8 rows and one fp32 scale per row (symmetric, round to nearest)."""
    scale = t.float().abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0  # (R, 1)
    return {"int8": torch.round(t.float() / scale).to(torch.int8), "scale": scale}


def _from_int8(q: dict[str, torch.Tensor]) -> torch.Tensor:
    return q["int8"].float() * q["scale"]


def _weights_sha256(weights: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for name in sorted(weights):
        for t in (weights[name].values() if isinstance(weights[name], dict) else [weights[name]]):
            digest.update(name.encode())
            digest.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
