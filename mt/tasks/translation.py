"""``mt train``: the translator's training task for the shared loop (``mt.train.loop.Trainer``), and the
recipe's hooks that it plugs in.

What is particular to translation: the model (``build_model``), length-bucketed batches of sentence pairs,
validation by teacher-forced loss and greedy BLEU, the tokenizer checksum every checkpoint carries, and the
optional start from pre-trained language models (``model.init_*_from``). The recipe's hooks (``mt.recipes``):
R-Drop's budget guard, kept checkpoints and the final-model choice, the freezing of pre-trained weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
import torch.distributed as dist

from mt.backends import resolve_backend
from mt.config import Config
from mt.data.batching import Batch, collate, make_batches
from mt.device import training_device
from mt.errors import MTError
from mt.model import Seq2Seq
from mt.recipes.averaging import FinalModelChoice, KeepCheckpoints
from mt.recipes.rdrop import RDropGuard
from mt.run import RunDir
from mt.tasks.validation import parts_that_fit, validation_bleu
from mt.train.hooks import Hook
from mt.train.loop import Trainer
from mt.train.progress import TrainResult
from mt.train.step import seed_everything
from mt.train.task import Validation
from mt.train.tensorboard import log_hooks

__all__ = ["TranslationTask", "list_lengths", "recipe_hooks", "train"]


def list_lengths(split, column: str) -> np.ndarray:
    """The length of every row's list in ``column`` of a ``datasets.Dataset``, (N,) int64, computed by Arrow
    without turning the rows into Python lists."""
    lists = split.with_format("arrow")[column]  # a pyarrow (Chunked)Array of lists, zero-copy
    return pc.list_value_length(lists).to_numpy().astype(np.int64, copy=False)


class TranslationTask:
    def __init__(self, run: RunDir, cfg: Config, model: Seq2Seq, device):
        """``model``: built by the backend of ``cfg.model.backend``, whose loss the task trains it with."""
        self.run, self.cfg, self.model, self.device = run, cfg, model, device
        self.backend = resolve_backend(cfg.model.backend)
        self.meta = run.meta()
        self.loss = self.backend.loss(model, cfg.train.label_smoothing, cfg.train.rdrop_alpha)
        self.tokenizer = run.tokenizer()
        encoded = run.encoded()
        train, val = encoded["train"], encoded["val"]
        # the training split stays on disk (memory-mapped Arrow): only the lengths are in memory, and each batch
        # reads its own rows, so memory does not grow with the corpus
        self.train = train.select_columns(["src_ids", "tgt_ids"])
        self.src_lens, self.tgt_lens = (list_lengths(self.train, c) for c in ("src_ids", "tgt_ids"))  # (N,) each
        n = cfg.train.val_max_sentences or len(val)
        src_ids, tgt_ids, self.val_refs = (val[c][:n] for c in ("src_ids", "tgt_ids", "ref"))
        # BLEU: every line, one over data.max_tokens in parts as `mt translate` cuts it (val_src[i]: line i's parts)
        self.val_src = parts_that_fit(val["src"][:n], src_ids, self.tokenizer.encode_src, cfg.data.max_tokens)
        # the loss: the pairs within data.max_tokens, as training's (a longer pair would be one huge batch)
        within = [i for i in range(len(src_ids)) if max(len(src_ids[i]), len(tgt_ids[i])) <= cfg.data.max_tokens]
        self.val_batches = [collate([src_ids[within[j]] for j in idx], [tgt_ids[within[j]] for j in idx],
                                    [within[j] for j in idx])
                            for idx in make_batches([len(src_ids[i]) for i in within],
                                                    [len(tgt_ids[i]) for i in within], cfg.train.batch_tokens)]

    def describe(self) -> str:
        world = dist.get_world_size() if dist.is_initialized() else 1
        return (f"training {self.model.num_parameters():,} parameters on {self.device}"
                f"{f' x {world} processes' if world > 1 else ''}, {self.backend.name} backend")

    def epoch_batches(self, seed: int) -> list[list[int]]:
        return make_batches(self.src_lens, self.tgt_lens, self.cfg.train.batch_tokens, shuffle=True, seed=seed)

    def batch(self, indices: list[int]) -> Batch:
        rows = self.train[indices]  # {"src_ids": [...], "tgt_ids": [...]} read from the memory-mapped split
        return collate(rows["src_ids"], rows["tgt_ids"], indices)

    def validate(self, loss: float) -> Validation:
        bleu, hyps = validation_bleu(self.model, self.val_src, self.val_refs, self.tokenizer.decode_tgt,
                                     self.cfg.decode, self.device)
        return Validation(bleu, {"val_bleu": bleu}, f"BLEU {bleu:.2f}", hyps[0] if hyps else "")

    def describe_best(self, score: float) -> str:
        return f"best validation BLEU {score:.2f}"

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"tokenizer_sha256": self.meta["tokenizer_sha256"],
                "vocab": [self.meta["src_vocab_size"], self.meta["tgt_vocab_size"]]}

    def check_checkpoint(self, state: dict[str, Any], path: Path) -> None:
        if state.get("tokenizer_sha256") != self.meta["tokenizer_sha256"]:
            raise MTError(f"{path} was trained with another tokenizer than {self.run.data_dir}; "
                          "start a new RUN or remove its checkpoints")


def train(run: RunDir, cfg: Config) -> TrainResult:
    """Train (or resume) the translator of ``run``; under ``torchrun`` with DistributedDataParallel."""
    with training_device(cfg.train.device, cfg.train.threads) as device:
        return _train(run, cfg, device)  # its trainer (and DDP wrapper) gone before the process group is left


def _train(run: RunDir, cfg: Config, device: torch.device) -> TrainResult:
    run.require_data_matches(cfg)
    meta = run.meta()
    seed_everything(cfg.train.seed)
    model = resolve_backend(cfg.model.backend).build_model(cfg.model, meta["src_vocab_size"],
                                                           meta["tgt_vocab_size"]).to(device)
    task = TranslationTask(run, cfg, model, device)
    trainer = Trainer(task, cfg, run, device, hooks=recipe_hooks(task, cfg))
    resumed = trainer.resume()
    if not resumed:
        _init_pretrained(model, cfg, run, meta, announce=trainer.is_main)
    return trainer.fit(resumed)


def recipe_hooks(task: TranslationTask, cfg: Config) -> list[Hook]:
    """The recipe's hooks for a translator, each configured by its ``train.*`` keys."""
    t = cfg.train
    hooks: list[Hook] = [RDropGuard(task.loss, t.rdrop_min_updates), KeepCheckpoints(t.keep_checkpoints),
                         FinalModelChoice(t.average_last)]
    hooks += log_hooks(t)
    if t.freeze_pretrained_epochs:
        from mt.recipes.transfer import FreezePretrained, pretrained_regions

        hooks.append(FreezePretrained(task.model, pretrained_regions(task.model, cfg.model),
                                      t.freeze_pretrained_epochs))
    return hooks


def _init_pretrained(model: Seq2Seq, cfg: Config, run: RunDir, meta: dict, announce: bool) -> None:
    """model.init_from (a translator) or init_encoder_from / init_decoder_from (language models): copy their
    weights in before the first step."""
    from mt.recipes.transfer import init_from_language_model, init_from_translator

    if cfg.model.init_from:
        used = init_from_translator(model, cfg.model, cfg.model.init_from, meta["tokenizer_sha256"], run.data_dir)
        if announce:
            print(f"initialised all {len(model.state_dict())} tensors from {used}", flush=True)

    for side, path, model_key in (("src", cfg.model.init_encoder_from, "src_model"),
                                  ("tgt", cfg.model.init_decoder_from, "tgt_model")):
        if path:
            copied = init_from_language_model(model, path, side, run.data_dir / meta[model_key])
            if announce:
                print(f"initialised {len(copied)} {'encoder' if side == 'src' else 'decoder'} tensors from {path}",
                      flush=True)
