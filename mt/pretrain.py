"""Pre-train a recurrent language model for one side of a prepared translation RUN (``mt pretrain``).

The LM run folder (LM_RUN) holds:

    LM_RUN/lm.json              side, source RUN, tokenizer checksum, vocabulary and data sizes
    LM_RUN/tokenizer.model      a copy of that side's SentencePiece model (so ``mt generate`` needs only LM_RUN)
    LM_RUN/config.yaml          the resolved config (model sizes come from the translator's config)
    LM_RUN/checkpoints/         best.pt (lowest validation perplexity), last.pt
    LM_RUN/train_log.jsonl      training and validation records; LM_RUN/plots/curves.png

Training text: that side of RUN's training split plus any extra monolingual files (one sentence per line);
validation: that side of RUN's validation split. Re-running the command on the same LM_RUN resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mt import __version__
from mt.batching import make_batches, pad
from mt.checkpoint import load_checkpoint, save_checkpoint
from mt.config import Config, config_to_dict
from mt.errors import MTError
from mt.loop import StopFlag, append_log, make_optimizer, train_step
from mt.model.lm import LanguageModel, build_language_model
from mt.model.loss import linear_cross_entropy
from mt.plots import plot_curves
from mt.run import RunDir, resolve_device
from mt.schedule import LRSchedule
from mt.tokenizer import BOS_ID, EOS_ID, PAD_ID

__all__ = ["LMResult", "load_language_model", "pretrain", "sha256_file"]

log = logging.getLogger("mt")
SIDES = ("src", "tgt")


@dataclass
class LMResult:
    step: int
    epoch: int
    best_ppl: float
    stopped: str
    tokens_per_second: float


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _side_model_path(run: RunDir, meta: dict, side: str) -> Path:
    return run.data_dir / meta["src_model" if side == "src" else "tgt_model"]


def _read_extra_text(paths: list[str], encode, max_tokens: int) -> list[list[int]]:
    from data_prep.clean import normalize
    from data_prep.sources import read_lines

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


def _batch(seqs: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """-> inputs (B, T) = BOS y_1 .. y_n, targets (B, T) = y_1 .. y_n EOS, and the number of real targets."""
    inputs = pad([[BOS_ID, *s] for s in seqs]).to(device)  # (B, T)
    targets = pad([[*s, EOS_ID] for s in seqs]).to(device)  # (B, T)
    return inputs, targets, sum(len(s) + 1 for s in seqs)


def _summed_loss(lm: LanguageModel, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    hidden, _ = lm(inputs)  # (B, T, H)
    mask = targets != PAD_ID  # (B, T)
    return linear_cross_entropy(hidden[mask], lm.output.weight, targets[mask])


@torch.no_grad()
def _validation_loss(lm: LanguageModel, seqs: list[list[int]], batch_tokens: int, device: torch.device) -> float:
    lm.eval()
    total, tokens = 0.0, 0
    for idx in make_batches([len(s) + 1 for s in seqs], None, batch_tokens):
        inputs, targets, n = _batch([seqs[i] for i in idx], device)
        hidden, _ = lm(inputs)
        mask = targets != PAD_ID
        total += float(F.cross_entropy(lm.output(hidden[mask]).float(), targets[mask], reduction="sum"))
        tokens += n
    lm.train()
    return total / max(tokens, 1)


def pretrain(lm_run: RunDir, from_run: RunDir, side: str, cfg: Config, texts: list[str] | None = None) -> LMResult:
    """Train (or resume) the ``side`` language model of ``from_run`` into ``lm_run``."""
    if side not in SIDES:
        raise MTError(f"--side must be src or tgt, got {side!r}")
    t = cfg.train
    device = resolve_device(t.device)
    if device.type == "cpu":
        torch.set_num_threads(t.threads or os.cpu_count() or 1)
    meta = from_run.meta()
    spm_path = _side_model_path(from_run, meta, side)
    encoded = from_run.encoded()
    column = "src_ids" if side == "src" else "tgt_ids"
    train_ids = [x for x in encoded["train"][column] if x]
    val_ids = [x for x in encoded["val"][column] if x]
    tokenizer = from_run.tokenizer()
    encode = tokenizer.encode_src if side == "src" else tokenizer.encode_tgt
    train_ids += _read_extra_text(list(texts or []), encode, cfg.data.max_tokens)
    vocab = meta["src_vocab_size" if side == "src" else "tgt_vocab_size"]

    lm_meta = {"side": side, "language": meta[side], "from_run": str(from_run.root), "tokenizer": "tokenizer.model",
               "tokenizer_sha256": sha256_file(spm_path), "vocab_size": vocab, "extra_texts": list(texts or []),
               "train_sentences": len(train_ids), "val_sentences": len(val_ids)}
    lm_run.root.mkdir(parents=True, exist_ok=True)
    meta_path = lm_run.root / "lm.json"
    if meta_path.is_file():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        if (old["side"], old["tokenizer_sha256"]) != (side, lm_meta["tokenizer_sha256"]):
            raise MTError(f"{lm_run.root} holds a {old['side']}-side LM of another tokenizer; use a new LM_RUN")
    shutil.copyfile(spm_path, lm_run.root / "tokenizer.model")
    meta_path.write_text(json.dumps(lm_meta, indent=2) + "\n", encoding="utf-8")

    torch.manual_seed(t.seed)
    random.seed(t.seed)
    lm = build_language_model(cfg.model, vocab, side).to(device)
    optimizer = make_optimizer(lm.parameters(), t.lr, t.weight_decay)
    schedule = LRSchedule(t)
    progress = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_loss": math.inf, "bad_validations": 0,
                "train_seconds": 0.0}
    ckpt_dir = lm_run.checkpoint_dir
    last = ckpt_dir / "last.pt"
    if last.is_file():
        state = load_checkpoint(last, map_location=device)
        if state["config"]["model"] != config_to_dict(cfg)["model"]:
            raise MTError(f"{last} has a different model config than the one given; use a new LM_RUN")
        lm.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        progress.update(state["progress"])
        torch.set_rng_state(state["rng"].cpu())
        print(f"resuming from {last.name}: step {progress['step']}, epoch {progress['epoch'] + 1}", flush=True)
    else:
        print(f"pre-training a {side}-side ({meta[side]}) language model: {lm.num_parameters():,} parameters, "
              f"{len(train_ids):,} training sentences, on {device}", flush=True)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
    started = time.perf_counter() - progress["train_seconds"]
    budget = t.max_minutes * 60
    tokens_done, step_seconds, last_ckpt = 0, 0.0, time.perf_counter()

    def checkpoint(best: bool = False) -> None:
        progress["train_seconds"] = time.perf_counter() - started
        state = {"model": lm.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                 "progress": dict(progress), "config": config_to_dict(cfg), "rng": torch.get_rng_state(),
                 "lm": lm_meta, "version": __version__}
        save_checkpoint(state, last)
        if best:
            save_checkpoint(state, ckpt_dir / "best.pt")

    def out_of_time() -> bool:
        return bool(budget) and time.perf_counter() - started >= budget

    def stop_reason() -> str | None:
        if progress["epoch"] >= t.max_epochs:
            return "max_epochs"
        if progress["bad_validations"] >= t.patience:
            return "early_stopping"
        return "max_minutes" if out_of_time() else None

    lens = [len(s) + 1 for s in train_ids]
    stopped = stop_reason()  # a finished LM_RUN re-run with the same limits has nothing to do
    if stopped:
        print(f"nothing left to train: this LM already reached its limit ({stopped}); raise train.max_epochs, "
              "train.max_minutes or train.patience to continue", flush=True)
    lm.train()
    with StopFlag() as stop:
        while stopped is None:
            batches = make_batches(lens, None, t.batch_tokens, shuffle=True, seed=t.seed * 1000 + progress["epoch"])
            bar = tqdm(total=len(batches), initial=progress["batch_in_epoch"], desc=f"LM epoch {progress['epoch'] + 1}",
                       dynamic_ncols=True, mininterval=1.0, unit="batch")
            try:  # the bar is closed even when a step fails, so an error message starts its own line
                for idx in batches[progress["batch_in_epoch"]:]:
                    t0 = time.perf_counter()
                    inputs, targets, n = _batch([train_ids[i] for i in idx], device)
                    loss = train_step(lambda: _summed_loss(lm, inputs, targets), n,  # noqa: B023
                                      optimizer, schedule, progress["step"] + 1, t.clip, autocast)
                    step_seconds += time.perf_counter() - t0
                    tokens_done += n
                    progress["step"] += 1
                    progress["batch_in_epoch"] += 1
                    bar.update(1)
                    if progress["step"] % t.log_every == 0:
                        rate = tokens_done / max(step_seconds, 1e-9)
                        bar.set_postfix(loss=f"{loss:.3f}", ppl=f"{math.exp(min(loss, 50)):.1f}", tok_s=f"{rate:.0f}")
                        append_log(lm_run.log_path, {"kind": "train", "step": progress["step"], "epoch": progress["epoch"],
                                                     "minutes": (time.perf_counter() - started) / 60, "loss": loss,
                                                     "tokens_per_s": rate})
                    if stop.requested or out_of_time():
                        break
                    if t.checkpoint_minutes and time.perf_counter() - last_ckpt >= t.checkpoint_minutes * 60:
                        checkpoint()
                        last_ckpt = time.perf_counter()
            finally:
                bar.close()
            if stop.requested:
                checkpoint()
                stopped = "interrupted"
                break
            if progress["batch_in_epoch"] >= len(batches):
                progress["epoch"] += 1
                progress["batch_in_epoch"] = 0
            val_loss = _validation_loss(lm, val_ids, t.batch_tokens, device)
            improved = val_loss < progress["best_loss"]
            progress["best_loss"] = min(val_loss, progress["best_loss"])
            progress["bad_validations"] = 0 if improved else progress["bad_validations"] + 1
            schedule.observe(-val_loss)
            append_log(lm_run.log_path, {"kind": "valid", "step": progress["step"], "epoch": progress["epoch"],
                                         "minutes": (time.perf_counter() - started) / 60, "val_loss": val_loss,
                                         "val_ppl": math.exp(min(val_loss, 50))})
            tqdm.write(f"step {progress['step']} epoch {progress['epoch']}: validation loss {val_loss:.3f} "
                       f"perplexity {math.exp(min(val_loss, 50)):.2f}{' (best)' if improved else ''}")
            checkpoint(best=improved)
            last_ckpt = time.perf_counter()
            plot_curves(lm_run.log_path, lm_run.plot_dir / "curves.png")
            stopped = stop_reason()
    rate = tokens_done / max(step_seconds, 1e-9)
    best_ppl = math.exp(min(progress["best_loss"], 50))
    print(f"stopped ({stopped}) at step {progress['step']}, epoch {progress['epoch']}; best validation perplexity "
          f"{best_ppl:.2f}; {rate:.0f} tokens/s; checkpoints in {ckpt_dir}", flush=True)
    return LMResult(progress["step"], progress["epoch"], best_ppl, stopped, rate)


def load_language_model(path: Path, map_location: str | torch.device = "cpu") -> tuple[LanguageModel, dict]:
    """A language-model checkpoint -> (model in eval mode, its ``lm`` metadata)."""
    from mt.config import config_from_dict

    state = load_checkpoint(path, map_location=map_location)
    if "lm" not in state:
        raise MTError(f"{path} is not a language-model checkpoint (make one with `mt pretrain`)")
    meta = state["lm"]
    cfg = config_from_dict(state["config"], source=str(path))
    lm = build_language_model(cfg.model, meta["vocab_size"], meta["side"])
    lm.load_state_dict(state["model"])
    return lm.to(map_location).eval(), meta
