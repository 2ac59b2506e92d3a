"""Pre-train a recurrent language model for one side of a prepared translation RUN (``mt pretrain``).

The LM run folder (LM_RUN) holds:

    LM_RUN/lm.json              side, source RUN, tokenizer checksum, vocabulary and data sizes
    LM_RUN/tokenizer.model      a copy of that side's SentencePiece model (so ``mt generate`` needs only LM_RUN)
    LM_RUN/config.yaml          the resolved config (model sizes come from the translator's config)
    LM_RUN/checkpoints/         best.pt (lowest validation perplexity), last.pt
    LM_RUN/train_log.jsonl      training and validation records; LM_RUN/plots/curves.png

Training text: that side of RUN's training split plus any extra monolingual files (one sentence per line);
validation: that side of RUN's validation split. The loop is the translator's (``mt.train.loop.Trainer``): the same
resume with fall-back, checkpoints (kept ones too, ``train.keep_checkpoints``), time budget, stopping, log and
curves. Re-running on the same LM_RUN resumes. A language model has no R-Drop and no final-model choice: its
loss is plain cross-entropy, and best.pt (lowest validation perplexity) is what ``mt generate`` and
``model.init_*_from`` use.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import torch

from mt.backends import resolve_backend
from mt.config import Config
from mt.data.batching import TextBatch, collate_text, make_batches
from mt.device import resolve_device, use_threads
from mt.errors import MTError
from mt.files import atomic_write, sha256_file
from mt.model.lm import LanguageModel
from mt.model.loss import SummedLoss
from mt.recipes.averaging import KeepCheckpoints
from mt.recipes.transfer import load_language_model
from mt.run import RunDir
from mt.text import normalize, read_lines
from mt.train.loop import Trainer
from mt.train.progress import TrainResult
from mt.train.step import seed_everything
from mt.train.task import Validation
from mt.train.tensorboard import log_hooks

__all__ = ["LanguageModelTask", "generate_text", "pretrain"]

log = logging.getLogger("mt")
SIDES = ("src", "tgt")


def _read_extra_text(paths: list[str], encode, max_tokens: int) -> list[list[int]]:
    out: list[list[int]] = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise MTError(f"monolingual text file not found: {path}")
        lines = [normalize(x) for x in read_lines(path)[0]]
        ids = [x[:max_tokens] for x in encode([x for x in lines if x])]
        log.info("%s: %d sentences", path, len(ids))
        out.extend(ids)
    return out


def _perplexity(loss: float) -> float:
    return math.exp(min(loss, 50))


class LanguageModelTask:
    def __init__(self, cfg: Config, model: LanguageModel, loss: SummedLoss, train: list[list[int]],
                 val: list[list[int]], meta: dict[str, Any], device: torch.device):
        """``loss``: the model's plain cross-entropy (no smoothing: perplexity is the LM's measure)."""
        self.cfg, self.model, self.loss, self.train, self.meta, self.device = cfg, model, loss, train, meta, device
        self.lens = [len(s) + 1 for s in train]  # EOS included
        self.val_batches = [collate_text([val[i] for i in idx])
                            for idx in make_batches([len(s) + 1 for s in val], None, cfg.train.batch_tokens)]

    def describe(self) -> str:
        return (f"pre-training a {self.meta['side']}-side ({self.meta['language']}) language model: "
                f"{self.model.num_parameters():,} parameters, {len(self.train):,} training sentences, on {self.device}")

    def epoch_batches(self, seed: int) -> list[list[int]]:
        return make_batches(self.lens, None, self.cfg.train.batch_tokens, shuffle=True, seed=seed)

    def batch(self, indices: list[int]) -> TextBatch:
        return collate_text([self.train[i] for i in indices])

    def validate(self, loss: float) -> Validation:
        return Validation(-loss)  # the lower the perplexity, the better

    def describe_best(self, score: float) -> str:
        return f"best validation perplexity {_perplexity(-score):.2f}"

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"lm": self.meta}

    def check_checkpoint(self, state: dict[str, Any], path: Path) -> None:
        if "lm" not in state:
            raise MTError(f"{path} is not a language-model checkpoint; use a new LM_RUN")


def pretrain(lm_run: RunDir, from_run: RunDir, side: str, cfg: Config, texts: list[str] | None = None) -> TrainResult:
    """Train (or resume) the ``side`` language model of ``from_run`` into ``lm_run``."""
    if side not in SIDES:
        raise MTError(f"--side must be src or tgt, got {side!r}")
    device = resolve_device(cfg.train.device)
    use_threads(device, cfg.train.threads)
    meta = from_run.meta()
    spm_path = from_run.data_dir / meta["src_model" if side == "src" else "tgt_model"]
    encoded = from_run.encoded()
    column = "src_ids" if side == "src" else "tgt_ids"
    train_ids = [x for x in encoded["train"][column] if x]
    val_ids = [x for x in encoded["val"][column] if x]
    tokenizer = from_run.tokenizer()
    encode = tokenizer.encode_src if side == "src" else tokenizer.encode_tgt
    train_ids += _read_extra_text(list(texts or []), encode, cfg.data.max_tokens)
    vocab = meta["src_vocab_size" if side == "src" else "tgt_vocab_size"]
    lm_meta = {"side": side, "language": meta[side], "from_run": str(from_run.root), "tokenizer": "tokenizer.model",
               "spm_sha256": sha256_file(spm_path), "vocab_size": vocab, "extra_texts": list(texts or []),
               "train_sentences": len(train_ids), "val_sentences": len(val_ids)}
    _write_lm_folder(lm_run, lm_meta, spm_path)

    seed_everything(cfg.train.seed)
    backend = resolve_backend(cfg.model.backend)
    lm = backend.build_language_model(cfg.model, vocab, side).to(device)
    task = LanguageModelTask(cfg, lm, backend.loss(lm), train_ids, val_ids, lm_meta, device)
    trainer = Trainer(task, cfg, lm_run, device, hooks=[KeepCheckpoints(cfg.train.keep_checkpoints), *log_hooks(cfg.train)])
    return trainer.fit(trainer.resume())


def _write_lm_folder(lm_run: RunDir, lm_meta: dict, spm_path: Path) -> None:
    """LM_RUN/lm.json and LM_RUN/tokenizer.model; an LM_RUN of another side or tokenizer is refused."""
    lm_run.root.mkdir(parents=True, exist_ok=True)
    meta_path = lm_run.root / "lm.json"
    if meta_path.is_file():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        if (old["side"], old.get("spm_sha256")) != (lm_meta["side"], lm_meta["spm_sha256"]):
            raise MTError(f"{lm_run.root} holds a {old['side']}-side LM of another tokenizer; use a new LM_RUN")
    shutil.copyfile(spm_path, lm_run.root / "tokenizer.model")
    atomic_write(meta_path, json.dumps(lm_meta, indent=2) + "\n")


def generate_text(lm_run: RunDir, prompt: str = "", num: int = 1, temperature: float = 1.0, top_k: int = 0,
                  max_len: int = 50, seed: int = 1, checkpoint: str = "best") -> list[str]:
    """``mt generate``: ``num`` samples of LM_RUN's language model continuing ``prompt`` (the same seed gives the
    same text)."""
    import sentencepiece as spm

    path = lm_run.checkpoint_dir / f"{checkpoint}.pt"
    if not path.is_file():
        raise MTError(f"no language model in {lm_run.root}: {path} not found (run `mt pretrain --run {lm_run.root} ...`)")
    if temperature < 0 or top_k < 0 or max_len < 1 or num < 1:
        raise MTError("--temperature and --top-k must be >= 0, --max-len and --num >= 1")
    lm, meta = load_language_model(path)
    sp = spm.SentencePieceProcessor(model_file=str(lm_run.root / meta["tokenizer"]))
    generator = torch.Generator().manual_seed(seed)
    start = sp.encode(prompt) if prompt else []
    return [sp.decode(start + lm.generate(start, max_len, temperature, top_k, generator)) for _ in range(num)]
