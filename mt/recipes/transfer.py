"""Initialise a translator's encoder or decoder from a pre-trained language model (``mt pretrain``), and keep
those weights fixed for the first epochs (``train.freeze_pretrained_epochs``, the ``FreezePretrained`` hook).

Target-side LM -> decoder: embeddings, every recurrent layer, output layer. The decoder's layer 0 reads
``[embedding; attentional vector]`` (input feeding), so the LM's input weights fill the embedding columns and
the input-feeding columns keep their fresh initialisation.
Source-side LM -> encoder: embeddings and the forward direction of every layer (``weight_ih_l{k}`` etc., not
``..._reverse``). Above layer 0 a bidirectional encoder reads ``[forward; backward]``; the LM's weights fill
the forward columns.
Any other difference in shape is an error naming the parameter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from mt.backends import resolve_backend
from mt.checkpoint import load_checkpoint
from mt.config import ModelConfig, config_from_dict
from mt.errors import MTError
from mt.files import sha256_file
from mt.model import Seq2Seq
from mt.model.lm import LanguageModel
from mt.train.hooks import Hook

__all__ = ["FreezePretrained", "init_from_language_model", "init_from_translator", "load_language_model",
           "pretrained_regions", "translator_checkpoint"]

log = logging.getLogger("mt")
_RECURRENT = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def load_language_model(path: Path, map_location: str | torch.device = "cpu") -> tuple[LanguageModel, dict]:
    """A language-model checkpoint -> (model in eval mode, its ``lm`` metadata)."""
    state = load_checkpoint(path, map_location=map_location)
    if "lm" not in state:
        raise MTError(f"{path} is not a language-model checkpoint (make one with `mt pretrain`)")
    meta = state["lm"]
    cfg = config_from_dict(state["config"], source=str(path))
    lm = resolve_backend(cfg.model.backend).build_language_model(cfg.model, meta["vocab_size"], meta["side"],
                                                                  init_weights=False)
    lm.load_state_dict(state["model"])
    return lm.to(map_location).eval(), meta


def _pairs(side: str, layers: int) -> list[tuple[str, str]]:
    """(LM parameter name, translator parameter name) pairs to copy."""
    part = "decoder" if side == "tgt" else "encoder"
    pairs = [("embed.weight", f"{part}.embed.weight")]
    pairs += [(f"rnn.{n}_l{k}", f"{part}.rnn.{n}_l{k}") for k in range(layers) for n in _RECURRENT]
    if side == "tgt":
        pairs.append(("output.weight", "decoder.output.weight"))
        pairs.append(("readout.weight", "decoder.readout.weight"))  # tied embeddings with E != H only
    return pairs


def init_from_language_model(model: Seq2Seq, path: str | Path, side: str, tokenizer_model: Path) -> list[str]:
    """Copy the weights of the LM checkpoint ``path`` into ``model``'s decoder (side ``tgt``) or encoder
    (``src``). ``tokenizer_model`` is the translator's SentencePiece model for that side: the LM must have
    been trained with the same one. Returns the names of the parameters written."""
    lm, meta = load_language_model(Path(path))
    if meta["side"] != side:
        where = "model.init_decoder_from" if side == "tgt" else "model.init_encoder_from"
        raise MTError(f"{where}: {path} is a {meta['side']}-side language model; this needs a {side}-side one")
    if meta["spm_sha256"] != sha256_file(tokenizer_model):
        raise MTError(f"{path} was trained with another tokenizer than this run's {side} side ({tokenizer_model}); "
                      "pre-train the LM with --from-run pointing at this run")
    lm_params = dict(lm.named_parameters(remove_duplicate=False))  # a tied LM: output.weight is embed.weight
    params = dict(model.named_parameters(remove_duplicate=False))  # tied weights answer to both names
    part = "decoder" if side == "tgt" else "encoder"
    layers = sum(1 for n in lm_params if n.startswith("rnn.weight_hh_l"))
    own_layers = sum(1 for n in params if n.startswith(f"{part}.rnn.weight_hh_l") and not n.endswith("_reverse"))
    if layers != own_layers:
        raise MTError(f"{path} has {layers} recurrent layer(s) but the {part} has {own_layers}; "
                      "pre-train the LM with this translator's model config")
    copied = []
    with torch.no_grad():
        for src_name, dst_name in _pairs(side, layers):
            if src_name == "readout.weight" and src_name not in lm_params and dst_name not in params:
                continue  # neither has a readout (untied, or E == H)
            if src_name not in lm_params:
                raise MTError(f"{path}: the LM has no {src_name} for the translator's {dst_name} "
                              "(model.tie_embeddings differs?); pre-train the LM with this translator's model config")
            if dst_name not in params:
                raise MTError(f"{path}: the translator has no parameter {dst_name} for the LM's {src_name} "
                              "(different number of layers or cell?)")
            source, target = lm_params[src_name], params[dst_name]
            if source.shape == target.shape:
                target.copy_(source)
            elif (src_name.startswith("rnn.weight_ih") and source.dim() == 2 and source.shape[0] == target.shape[0]
                  and source.shape[1] < target.shape[1]):
                target[:, : source.shape[1]].copy_(source)  # embedding (or forward) columns; the rest stays fresh
            else:
                raise MTError(f"{path}: {src_name} has shape {tuple(source.shape)} but {dst_name} has "
                              f"{tuple(target.shape)}; pre-train the LM with this translator's model config")
            copied.append(dst_name)
    return copied


# model.* keys that decide the shapes of a translator's weights: a child must have its parent's
_SHAPE_KEYS = ("emb_dim", "hidden_dim", "layers", "bidirectional", "tie_embeddings", "share_embeddings", "attention",
               "cell")


def translator_checkpoint(path: str | Path) -> Path:
    """``model.init_from``: a run folder (its final model) or a checkpoint file -> the checkpoint file."""
    from mt.run import RunDir

    path = Path(path)
    if path.is_dir():
        return RunDir.of(path).model_path("final")
    if not path.is_file():
        raise MTError(f"model.init_from: {path} not found (give a trained run folder or a checkpoint file)")
    return path


def init_from_translator(model: Seq2Seq, cfg: ModelConfig, path: str | Path, tokenizer_sha256: str,
                         data_dir: Path) -> Path:
    """Copy every weight of the translator checkpoint at ``path`` (a run: its final model) into ``model``, whose
    run's tokenizer checksum is ``tokenizer_sha256``. Returns the checkpoint file used."""
    file = translator_checkpoint(path)
    state = load_checkpoint(file)
    if "lm" in state:
        raise MTError(f"model.init_from: {file} is a language model; start from it with model.init_decoder_from "
                      "or model.init_encoder_from")
    theirs = state.get("tokenizer_sha256", "")
    if theirs != tokenizer_sha256:
        raise MTError(f"model.init_from: {file} was trained with tokenizer {theirs[:12]} but {data_dir} has "
                      f"{tokenizer_sha256[:12]}; prepare this run with `mt prepare --tokenizer-from` its run")
    parent = config_from_dict(state["config"], source=str(file)).model
    differ = [k for k in _SHAPE_KEYS if hasattr(cfg, k) and getattr(cfg, k) != getattr(parent, k)]
    if differ:
        fix = " ".join(f"model.{k}={getattr(parent, k)}" for k in differ)
        raise MTError(f"model.init_from: {file} has another model shape ({', '.join(f'model.{k}' for k in differ)}"
                      f" differ); train this run with {fix}")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise MTError(f"model.init_from: {file} does not fit this model: {str(e).splitlines()[0]}") from None
    return file


def pretrained_regions(model: Seq2Seq, cfg: ModelConfig) -> dict[str, int | None]:
    """The parameters ``init_*_from`` wrote, by name: ``None`` for the whole tensor, or the number of leading
    columns (the embedding part of decoder layer 0, the forward part of upper encoder layers)."""
    params = dict(model.named_parameters(remove_duplicate=False))  # shared embeddings answer to both names
    regions: dict[str, int | None] = {}
    seen: set[int] = set()
    for side, path in (("src", cfg.init_encoder_from), ("tgt", cfg.init_decoder_from)):
        if not path:
            continue
        for _, name in _pairs(side, cfg.layers):
            if name not in params or id(params[name]) in seen:  # no readout, or the output layer tied to the embeddings
                continue
            seen.add(id(params[name]))
            limit = None
            if side == "tgt" and name == "decoder.rnn.weight_ih_l0":
                limit = cfg.emb_dim
            elif side == "src" and cfg.bidirectional and name.startswith("encoder.rnn.weight_ih_l") and \
                    not name.endswith("_l0"):
                limit = cfg.hidden_dim // 2
            regions[name] = limit
    return regions


class FreezePretrained(Hook):
    """While the run is in its first ``epochs`` epochs, the gradients of the pre-trained regions
    (``pretrained_regions``) are zero, so Adam leaves them as they are: the fresh attention and bridge learn to use
    them first."""

    def __init__(self, model: Seq2Seq, regions: dict[str, int | None], epochs: int):
        self.model, self.regions, self.epochs = model, regions, epochs

    def start(self, trainer) -> None:
        params = dict(self.model.named_parameters(remove_duplicate=False))
        frozen = lambda: trainer.progress.epoch < self.epochs  # noqa: E731
        for name, limit in self.regions.items():
            params[name].register_hook(_zero_gradient(limit, frozen))


def _zero_gradient(limit: int | None, frozen: Callable[[], bool]):
    """A gradient hook: while ``frozen()``, the gradient is zero (in its first ``limit`` columns, or all)."""
    def hook(grad: torch.Tensor) -> torch.Tensor:
        if not frozen():
            return grad
        grad = grad.clone()
        if limit is None:
            grad.zero_()
        else:
            grad[:, :limit] = 0
        return grad
    return hook
