"""The training loop: token-budget batches, label-smoothed cross-entropy, Adam, clipping, validation each epoch,
early stopping, atomic checkpoints with everything needed to resume, progress bar, JSONL log and curves.

Run it with ``mt train --run RUN``; under ``torchrun --nproc_per_node N`` it trains with DistributedDataParallel
(gloo on CPU, NCCL on GPU): each rank takes every N-th batch, rank 0 alone validates and writes files.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from mt import __version__
from mt.batching import collate, make_batches
from mt.checkpoint import load_checkpoint, save_checkpoint
from mt.config import Config, config_to_dict
from mt.errors import MTError
from mt.loop import StopFlag, append_log, make_optimizer, train_step
from mt.model import Seq2Seq, build_model
from mt.model.loss import linear_cross_entropy
from mt.plots import plot_curves
from mt.run import RunDir, resolve_device
from mt.schedule import LRSchedule
from mt.tokenizer import PAD_ID
from mt.validate import validation_bleu, validation_loss

__all__ = ["TrainResult", "train"]

log = logging.getLogger("mt")


@dataclass
class TrainResult:
    step: int
    epoch: int
    best_bleu: float
    stopped: str  # why training ended
    tokens_per_second: float
    minutes: float


@dataclass
class Progress:
    """Everything besides tensors that a resumed run must continue: saved in each checkpoint."""
    step: int = 0
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the current epoch already trained
    best_bleu: float = -1.0
    bad_validations: int = 0
    train_seconds: float = 0.0
    val_seconds: float = 0.0  # the last validation's duration: a time budget keeps room for the next one


class LabelSmoothedLoss(nn.Module):
    """Wraps the model so that one forward call gives the summed loss (what DDP needs to see)."""

    def __init__(self, model: Seq2Seq, smoothing: float):
        super().__init__()
        self.model, self.smoothing = model, smoothing

    def forward(self, src, src_lens, tgt_in, tgt_out):
        vecs = self.model(src, src_lens, tgt_in)  # (B, T, H)
        mask = tgt_out != PAD_ID  # (B, T)
        # Only real tokens reach the output layer; logits are never held for the whole batch (mt.model.loss).
        return linear_cross_entropy(vecs[mask], self.model.decoder.output.weight, tgt_out[mask], self.smoothing)


def _load_split(run: RunDir, name: str, columns: list[str]) -> dict[str, list]:
    split = run.encoded()[name]
    return {c: split[c] for c in columns}


def train(run: RunDir, cfg: Config) -> TrainResult:
    t = cfg.train
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = resolve_device(t.device)
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    main_process = rank == 0
    if device.type == "cpu":
        torch.set_num_threads(t.threads or max(1, (os.cpu_count() or 1) // world))
    else:
        torch.cuda.set_device(device)

    meta = run.meta()
    if (meta["src"], meta["tgt"]) != (cfg.data.src, cfg.data.tgt):
        raise MTError(f"{run.root} was prepared for {meta['src']}->{meta['tgt']} but the config says "
                      f"{cfg.data.src}->{cfg.data.tgt}; re-run `mt prepare` or fix data.src/data.tgt")
    tokenizer = run.tokenizer()
    train_data = _load_split(run, "train", ["src_ids", "tgt_ids"])
    val = _load_split(run, "val", ["src_ids", "tgt_ids", "ref"])
    if t.val_max_sentences:
        val = {k: v[: t.val_max_sentences] for k, v in val.items()}

    torch.manual_seed(t.seed)
    random.seed(t.seed)
    model = build_model(cfg.model, meta["src_vocab_size"], meta["tgt_vocab_size"]).to(device)
    optimizer = make_optimizer(model.parameters(), t.lr, t.weight_decay)
    schedule = LRSchedule(t)
    progress = Progress()

    ckpt_dir = run.checkpoint_dir
    resumed = _try_resume(ckpt_dir, model, optimizer, schedule, progress, cfg, meta, device)
    if not resumed:
        _init_pretrained(model, cfg, run, meta, announce=main_process)
    if t.freeze_pretrained_epochs:
        from mt.transfer import freeze_pretrained, pretrained_regions

        freeze_pretrained(model, pretrained_regions(model, cfg.model),
                          lambda: progress.epoch < t.freeze_pretrained_epochs)
    if main_process:
        if resumed:
            print(f"resuming from {resumed.name}: step {progress.step}, epoch {progress.epoch + 1}, "
                  f"batch {progress.batch_in_epoch} of that epoch", flush=True)
        else:
            print(f"training {model.num_parameters():,} parameters on {device}"
                  f"{f' x {world} processes' if distributed else ''}", flush=True)
        try:
            run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MTError(f"cannot create {run.checkpoint_dir}: {e.strerror or e}; is {run.root} writable?") from None
        for stale in run.checkpoint_dir.glob(".*.tmp-*"):  # a write cut short by SIGKILL or a full disk
            log.warning("removing %s, an incomplete checkpoint write of an earlier run", stale.name)
            stale.unlink()

    loss_module = LabelSmoothedLoss(model, t.label_smoothing)
    step_module: nn.Module = loss_module
    if distributed:
        step_module = nn.parallel.DistributedDataParallel(loss_module, device_ids=[device] if device.type == "cuda" else None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")

    budget = t.max_minutes * 60.0
    started = time.perf_counter() - progress.train_seconds
    elapsed = lambda: time.perf_counter() - started  # noqa: E731
    last_ckpt = time.perf_counter()
    tokens_done, step_seconds = 0, 0.0  # throughput counts training steps only, not validation
    interval_loss, interval_tokens = 0.0, 0  # token-weighted mean loss since the last log record
    stopped = _rank0_decides(_stop_reason(progress, t, elapsed(), budget))
    if stopped and main_process:
        print(f"nothing left to train: this run already reached its limit ({stopped}); raise train.max_epochs, "
              "train.max_minutes or train.patience to continue", flush=True)

    def checkpoint(best: bool = False) -> None:
        if not main_process:
            return
        progress.train_seconds = elapsed()
        state = {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "progress": progress.__dict__, "config": config_to_dict(cfg), "rng": torch.get_rng_state(),
            "tokenizer_sha256": meta["tokenizer_sha256"], "vocab": [meta["src_vocab_size"], meta["tgt_vocab_size"]],
            "version": __version__,
        }
        save_checkpoint(state, ckpt_dir / "last.pt")
        if best:
            save_checkpoint(state, ckpt_dir / "best.pt")
        if t.keep_checkpoints and progress.batch_in_epoch == 0:  # an epoch just ended: keep its weights
            weights = {k: v for k, v in state.items() if k not in ("optimizer", "schedule", "rng")}
            save_checkpoint(weights, ckpt_dir / f"epoch-{progress.epoch:03d}.pt")
            for old in sorted(ckpt_dir.glob("epoch-*.pt"))[: -t.keep_checkpoints]:
                old.unlink()

    def validate() -> None:
        v0 = time.perf_counter()
        decision = [None]
        if main_process:
            val_loss, val_ppl = validation_loss(model, val["src_ids"], val["tgt_ids"], t.batch_tokens, device)
            bleu, hyps = validation_bleu(model, val["src_ids"], val["ref"], tokenizer.decode_tgt, cfg.decode, device)
            improved = bleu > progress.best_bleu
            progress.best_bleu = max(bleu, progress.best_bleu)
            progress.bad_validations = 0 if improved else progress.bad_validations + 1
            decayed = schedule.observe(bleu)
            progress.val_seconds = time.perf_counter() - v0  # before the checkpoint: a resumed run reserves it too
            record = {"kind": "valid", "step": progress.step, "epoch": progress.epoch, "minutes": elapsed() / 60,
                      "val_loss": val_loss, "val_ppl": val_ppl, "val_bleu": bleu, "best_bleu": progress.best_bleu,
                      "lr": schedule.lr(progress.step + 1), "seconds": progress.val_seconds}
            append_log(run.log_path, record)
            tqdm.write(f"step {progress.step} epoch {progress.epoch}: val loss {val_loss:.3f} ppl {val_ppl:.2f} "
                       f"BLEU {bleu:.2f}{' (best)' if improved else ''}{' lr decayed' if decayed else ''} "
                       f"| e.g. {hyps[0]!r}")
            checkpoint(best=improved)
            plot_curves(run.log_path, run.plot_dir / "curves.png")
            decision = [(progress.best_bleu, progress.bad_validations, schedule.state_dict())]
        model.train()
        if distributed:
            dist.broadcast_object_list(decision, src=0)
            progress.best_bleu, progress.bad_validations, sched = decision[0]
            schedule.load_state_dict(sched)
        progress.val_seconds = time.perf_counter() - v0  # on every rank, now with the checkpoint and plot included

    stop = StopFlag()
    model.train()
    src_lens = [len(s) for s in train_data["src_ids"]]
    tgt_lens = [len(s) for s in train_data["tgt_ids"]]
    with stop:
        while stopped is None:
            batches = make_batches(src_lens, tgt_lens, t.batch_tokens, shuffle=True, seed=t.seed * 1000 + progress.epoch)
            batches = batches[: len(batches) - len(batches) % world][rank::world]
            bar = tqdm(total=len(batches), initial=progress.batch_in_epoch, desc=f"epoch {progress.epoch + 1}",
                       disable=not main_process, dynamic_ncols=True, mininterval=1.0, unit="batch")
            try:  # the bar is closed even when a step fails, so an error message starts its own line
                for idx in batches[progress.batch_in_epoch:]:
                    step_start = time.perf_counter()
                    batch = collate([train_data["src_ids"][i] for i in idx], [train_data["tgt_ids"][i] for i in idx], idx)
                    b = batch.to(device)
                    loss = train_step(lambda: step_module(b.src, b.src_lens, b.tgt_in, b.tgt_out), b.n_tokens,  # noqa: B023
                                      optimizer, schedule, progress.step + 1, t.clip, autocast)
                    step_seconds += time.perf_counter() - step_start
                    interval_loss += loss * batch.n_tokens
                    interval_tokens += batch.n_tokens
                    progress.step += 1
                    progress.batch_in_epoch += 1
                    tokens_done += batch.n_tokens * world
                    bar.update(1)
                    if progress.step % t.log_every == 0 or progress.step == 1:
                        rate = tokens_done / max(step_seconds, 1e-9)
                        loss, interval_loss, interval_tokens = interval_loss / interval_tokens, 0.0, 0
                        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:.0f}", lr=f"{schedule.lr(progress.step):.2e}")
                        if main_process:
                            append_log(run.log_path, {"kind": "train", "step": progress.step, "epoch": progress.epoch,
                                              "minutes": elapsed() / 60, "loss": loss, "lr": schedule.lr(progress.step),
                                              "tokens_per_s": rate})
                    out_of_time = bool(budget) and elapsed() + progress.val_seconds >= budget
                    interrupted, out_of_time = _any_rank(device, stop.requested, out_of_time)
                    if interrupted or out_of_time:
                        stop.requested = interrupted  # every rank takes the same way out of the loop
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
            if progress.batch_in_epoch >= len(batches):
                progress.epoch += 1
                progress.batch_in_epoch = 0
            validate()
            last_ckpt = time.perf_counter()
            stopped = _rank0_decides(_stop_reason(progress, t, elapsed(), budget))
    rate = tokens_done / max(step_seconds, 1e-9)
    if main_process:
        print(f"stopped ({stopped}) at step {progress.step}, epoch {progress.epoch}; best validation BLEU "
              f"{progress.best_bleu:.2f}; {rate:.0f} target tokens/s; checkpoints in {ckpt_dir}", flush=True)
    if distributed:
        dist.barrier()
    return TrainResult(progress.step, progress.epoch, progress.best_bleu, stopped, rate, elapsed() / 60)


def _stop_reason(p: Progress, t, elapsed: float, budget: float) -> str | None:
    """Why training stops now, or None. With a time budget, what is left must hold the final validation and at
    least as much training before it: otherwise the last minutes would buy validations a step or two apart,
    each of which also counts as a plateau and halves the learning rate a resumed run inherits."""
    if p.epoch >= t.max_epochs:
        return "max_epochs"
    if p.bad_validations >= t.patience:
        return "early_stopping"
    if budget and elapsed + 2 * p.val_seconds >= budget:
        return "max_minutes"
    return None


def _any_rank(device: torch.device, *flags: bool) -> tuple[bool, ...]:
    """Each flag, true on every rank when it is true on any. Under DDP the ranks must leave the step loop at the
    same step and for the same reason (a Ctrl-C or the time budget, each seen by its own clock): a rank that
    trained on alone would wait forever in the next gradient all-reduce."""
    if not dist.is_initialized():
        return flags
    votes = torch.tensor([float(f) for f in flags], device=device)  # (len(flags),)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in votes.tolist())


def _rank0_decides(value):
    """Rank 0's value on every rank (the value itself when not distributed)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _init_pretrained(model: Seq2Seq, cfg: Config, run: RunDir, meta: dict, announce: bool) -> None:
    """model.init_encoder_from / init_decoder_from: copy language-model weights in before the first step."""
    from mt.transfer import init_from_language_model

    for side, path, model_key in (("src", cfg.model.init_encoder_from, "src_model"),
                                  ("tgt", cfg.model.init_decoder_from, "tgt_model")):
        if path:
            copied = init_from_language_model(model, path, side, run.data_dir / meta[model_key])
            if announce:
                print(f"initialised {len(copied)} {'encoder' if side == 'src' else 'decoder'} tensors from {path}",
                      flush=True)


def _try_resume(ckpt_dir: Path, model, optimizer, schedule, progress: Progress, cfg: Config, meta: dict,
                device: torch.device) -> Path | None:
    """Load the newest complete checkpoint (last.pt, else best.pt); a damaged one is skipped with a warning."""
    for path in (ckpt_dir / "last.pt", ckpt_dir / "best.pt"):
        if not path.is_file():
            continue
        try:
            state = load_checkpoint(path, map_location=device)
        except MTError as e:
            log.warning("%s; trying the previous checkpoint", e)
            continue
        if state.get("tokenizer_sha256") != meta["tokenizer_sha256"]:
            raise MTError(f"{path} was trained with another tokenizer than {ckpt_dir.parent}/data; "
                          "start a new RUN or remove its checkpoints")
        if state["config"]["model"] != config_to_dict(cfg)["model"]:
            raise MTError(f"{path} has a different model config than the one given; start a new RUN, "
                          "or train with the run's own config")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        for key, value in state["progress"].items():
            setattr(progress, key, value)
        torch.set_rng_state(state["rng"].cpu())
        return path
    return None
