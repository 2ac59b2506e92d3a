"""The training loop that every training command runs: ``mt train`` (``mt.train``) and ``mt pretrain``
(``mt.pretrain``) differ only in the ``TrainingTask`` they hand to ``Trainer``: the model and its loss, the
batches, and how a validation scores the model.

What the loop owns, so that every task has it:
- resume from ``last.pt``, falling back to ``best.pt`` when ``last.pt`` is damaged; stale temporary files of a
  killed run are removed; every checkpoint write is atomic;
- the step loop with a progress bar, the learning-rate schedule, gradient clipping, the JSONL log and curves;
- validation every ``train.validate_every`` updates or ``train.validate_minutes`` (mid-epoch when due), at an
  epoch's end when that comes sooner (after ``train.validate_min_steps`` updates), and when training stops;
  ``best.pt``, and one kept checkpoint per validation for averaging;
- stopping: ``train.max_epochs``, early stopping, ``train.max_minutes`` with room kept for the final
  validation, Ctrl-C / SIGTERM with a complete checkpoint, and under ``torchrun`` the ranks' agreement on all of
  these (each rank takes every N-th batch; rank 0 alone validates and writes files).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from mt import __version__
from mt.checkpoint import load_checkpoint, save_checkpoint
from mt.config import Config, config_from_dict, config_to_dict
from mt.device import autocast, resolve_precision
from mt.ema import WeightAverage
from mt.errors import MTError
from mt.files import append_jsonl, remove_stale_temporaries
from mt.model.loss import SummedLoss, validation_loss
from mt.plots import plot_curves
from mt.profiling import CLIP, OPTIMIZER, span
from mt.run import RunDir
from mt.schedule import LRSchedule, improves
from mt.stopping import (
    StopFlag,
    any_rank,
    epochs_in_budget,
    out_of_time,
    rank0_decides,
    rank_values,
    stop_reason,
)

__all__ = ["Progress", "TrainResult", "Trainer", "TrainingTask", "Validation", "make_optimizer", "seed_everything",
           "train_step"]

log = logging.getLogger("mt")


@dataclass
class Progress:
    """Everything besides tensors that a resumed run must continue: saved in each checkpoint."""
    step: int = 0
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the current epoch already trained
    best_score: float = -math.inf  # the task's validation score (higher is better)
    best_val_loss: float = math.inf  # the validation loss of the last validation that made progress
    best_ema_score: float = -math.inf  # the weight average's best validation score (train.ema_decay)
    bad_validations: int = 0  # in a row, without progress in the score or the loss (early stopping)
    validated_step: int = 0  # the step of the last validation
    train_seconds: float = 0.0
    val_seconds: float = 0.0  # the last validation's duration: a time budget keeps room for the next one
    rdrop_checked: bool = False  # train.rdrop_min_epochs: the budget was measured against R-Drop's pace...
    rdrop_off: bool = False  # ...and found too short for it: the run trains on without R-Drop

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Progress:
        saved = dict(saved)
        if "best_bleu" in saved:  # checkpoints written before the shared loop (translator, LM)
            saved["best_score"] = saved.pop("best_bleu")
        if "best_loss" in saved:
            saved["best_score"] = -saved.pop("best_loss")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})


@dataclass
class Validation:
    """What a task adds to the validation loss, which the loop computes for every task."""
    score: float  # higher is better: decides best.pt and early stopping (and the plateau with plateau_metric=bleu)
    record: dict[str, float] = field(default_factory=dict)  # the task's own fields of the "valid" log record
    summary: str = ""  # for the console after "val loss .. ppl ..", e.g. "BLEU 3.13"
    example: str = ""  # e.g. the first translation, shown after the summary


@dataclass
class TrainResult:
    step: int
    epoch: int
    best_score: float
    stopped: str  # why training ended: max_epochs, early_stopping, max_minutes, interrupted
    tokens_per_second: float
    minutes: float


class TrainingTask(Protocol):
    """What differs between training a translator and a language model."""
    model: nn.Module  # the weights that checkpoints hold
    loss: SummedLoss  # loss(*batch.model_inputs, targets=batch.targets) -> summed loss; .rdrop: its R-Drop weight
    val_batches: list  # the validation split's batches (CPU), for the validation loss

    def describe(self) -> str: ...  # the first line of a fresh run, e.g. "training 13,182,464 parameters on cpu"
    def epoch_batches(self, seed: int) -> list[list[int]]: ...  # the epoch's batches as index lists, shuffled by seed
    def batch(self, indices: list[int]): ...  # -> a CPU batch with model_inputs, targets, n_tokens and to(device)
    def validate(self, loss: float) -> Validation: ...  # given the validation loss per token
    def describe_best(self, score: float) -> str: ...  # e.g. "best validation BLEU 37.76"
    def checkpoint_extras(self) -> dict[str, Any]: ...  # what a checkpoint needs besides the loop's own state
    def check_checkpoint(self, state: dict[str, Any], path: Path) -> None: ...  # MTError if it cannot resume


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)


def make_optimizer(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (AdamW with weight decay) with the fused kernel: one pass over each parameter instead of about ten
    elementwise passes (about 35 ms less per step for the 13M-parameter default model on 2 CPU cores)."""
    cls = torch.optim.AdamW if weight_decay else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=weight_decay, fused=True)


def train_step(forward: Callable[[], torch.Tensor], n_tokens: int, optimizer: torch.optim.Optimizer,
               schedule: LRSchedule, step: int, clip: float, precision) -> float:
    """One update: ``forward()`` returns the summed loss of a batch of ``n_tokens`` target tokens; the mean
    is back-propagated, gradients are clipped to norm ``clip`` (0: no clipping). ``precision`` is the autocast
    context (``mt.device.autocast``). Returns the mean loss."""
    lr = schedule.lr(step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    with precision:
        loss_sum = forward()
    loss = loss_sum / n_tokens
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        with span(CLIP):
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip)
    with span(OPTIMIZER):
        optimizer.step()
    value = loss.item()
    if not math.isfinite(value):
        raise MTError(f"training diverged at step {step} (loss {value}); lower train.lr or raise train.clip")
    return value


class Trainer:
    def __init__(self, task: TrainingTask, cfg: Config, run: RunDir, device: torch.device):
        self.task, self.cfg, self.limits, self.run, self.device = task, cfg, cfg.train, run, device
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.main = self.rank == 0
        self.optimizer = make_optimizer(task.model.parameters(), self.limits.lr, self.limits.weight_decay)
        self.schedule = LRSchedule(self.limits)
        self.progress = Progress()
        self.ema = WeightAverage(task.model, self.limits.ema_decay) if self.limits.ema_decay else None
        self.stop = StopFlag()
        self._started = time.perf_counter()  # the run's clock, counting earlier sessions' time once resumed
        self._last_checkpoint = time.perf_counter()
        self._last_validation = time.perf_counter()  # train.validate_minutes counts from here
        self._validation_by_time = False  # train.validate_minutes passed (the ranks agreed on it)
        self._epoch_length = 1  # batches of the current epoch on this rank
        self._rdrop_alpha = task.loss.rdrop  # the task's R-Drop weight; the loss carries it in the epochs that use it
        self._pace_mark: tuple[float, float] | None = None  # (epochs, seconds) at the last validation, or where
        # R-Drop started: the budget check measures R-Drop's pace from here
        self._tokens, self._step_seconds, self._steps = 0, 0.0, 0  # this session's training steps, not validation
        self._interval_loss, self._interval_tokens = 0.0, 0  # token-weighted mean loss since the last log record

    # ------------------------------------------------------------------ resume and checkpoints

    def resume(self) -> Path | None:
        """Load the newest complete checkpoint of the run (last.pt, else best.pt; a damaged one is skipped with a
        warning); returns its path, or None for a fresh start."""
        folder = self.run.checkpoint_dir
        for path in (folder / "last.pt", folder / "best.pt"):
            if not path.is_file():
                continue
            try:
                state = load_checkpoint(path, map_location=self.device)
            except MTError as e:
                log.warning("%s; trying the previous checkpoint", e)
                continue
            self.task.check_checkpoint(state, path)
            # through the defaults: a run saved before a model key existed has that key's default
            saved_model = config_to_dict(config_from_dict({"model": state["config"]["model"]}, str(path)))["model"]
            if saved_model != config_to_dict(self.cfg)["model"]:
                raise MTError(f"{path} has a different model config than the one given; start a new RUN, "
                              "or train with the run's own config")
            self.task.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            self.progress = Progress.from_dict(state["progress"])
            if self.ema:  # a run that turned train.ema_decay on later starts the average from its weights
                self.ema = WeightAverage(self.task.model, self.limits.ema_decay)
                if "ema" in state:
                    self.ema.load_state_dict(state["ema"])
            torch.set_rng_state(state["rng"].cpu())
            return path
        return None

    def _checkpoint(self, best: bool = False, validated: bool = False, best_ema: bool = False) -> None:
        """last.pt (and best.pt; after a validation also step-NNNNNNNN.pt, the newest train.keep_checkpoints kept
        for ``mt average``; best-ema.pt, the weight average's weights when it reached its best score)."""
        if not self.main:
            return
        folder, p = self.run.checkpoint_dir, self.progress
        p.train_seconds = self._elapsed()
        state = {"model": self.task.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "schedule": self.schedule.state_dict(), "progress": asdict(p), "config": config_to_dict(self.cfg),
                 "rng": torch.get_rng_state(), "version": __version__, **self.task.checkpoint_extras()}
        if self.ema:
            state["ema"] = self.ema.state_dict()
        save_checkpoint(state, folder / "last.pt")
        if best:
            save_checkpoint(state, folder / "best.pt")
        weights = {k: v for k, v in state.items() if k not in ("optimizer", "schedule", "rng", "ema")}
        if best_ema:
            save_checkpoint({**weights, "model": self.ema.model_state()}, folder / "best-ema.pt")
        keep = self.limits.keep_checkpoints
        if keep and validated:
            save_checkpoint(weights, folder / f"step-{p.step:08d}.pt")
            for old in sorted(folder.glob("step-*.pt"))[:-keep]:
                old.unlink()
        self._last_checkpoint = time.perf_counter()

    def _prepare_folder(self) -> None:
        try:
            self.run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MTError(f"cannot create {self.run.checkpoint_dir}: {e.strerror or e}; "
                          f"is {self.run.root} writable?") from None
        remove_stale_temporaries(self.run.checkpoint_dir)

    # ------------------------------------------------------------------ the loop

    def _elapsed(self) -> float:
        return time.perf_counter() - self._started

    def _budget(self) -> float:
        return self.limits.max_minutes * 60.0

    def fit(self, resumed_from: Path | None = None) -> TrainResult:
        """Train until a stop reason; ``resumed_from``: what ``resume()`` returned, for the first message."""
        p = self.progress
        if self.main:
            print(f"resuming from {resumed_from.name}: step {p.step}, epoch {p.epoch + 1}, batch {p.batch_in_epoch} "
                  "of that epoch" if resumed_from else self.task.describe(), flush=True)
            self._prepare_folder()
        self._step_module = self.task.loss
        resumed_steps = rank_values(self.device, p.step)
        if len(set(resumed_steps)) > 1:  # e.g. two machines that do not share RUN: rank 0 alone writes checkpoints
            raise MTError(f"the processes resumed at different steps ({', '.join(f'{s:.0f}' for s in resumed_steps)}"
                          f" by rank): every machine must see the same {self.run.root} (a shared filesystem)")
        if self.world > 1:
            ids = [self.device] if self.device.type == "cuda" else None
            self._step_module = nn.parallel.DistributedDataParallel(self.task.loss, device_ids=ids)
        precision, why = resolve_precision(self.limits.precision, self.device)
        if self.main:
            print(f"precision: {precision} ({why})", flush=True)
        self._precision = autocast(self.device, precision)
        self._started = time.perf_counter() - p.train_seconds
        self._last_checkpoint = self._last_validation = time.perf_counter()
        stopped = rank0_decides(stop_reason(p, self.limits, self._elapsed(), self._budget()))
        if stopped and self.main:
            print(f"nothing left to train: this run already reached its limit ({stopped}); raise train.max_epochs, "
                  "train.max_minutes or train.patience to continue", flush=True)
        self.task.model.train()
        with self.stop:
            while stopped is None:
                self._apply_rdrop_choice()
                finished_epoch = self._train_epoch()
                if self.stop.requested:
                    self._checkpoint()
                    stopped = "interrupted"
                    break
                if finished_epoch:
                    p.epoch, p.batch_in_epoch = p.epoch + 1, 0
                stopped = rank0_decides(stop_reason(p, self.limits, self._elapsed(), self._budget()))
                if p.step > p.validated_step and (stopped or self._validation_due(finished_epoch)):
                    self._validate()  # the last one too, whether due or not
                    stopped = rank0_decides(stop_reason(p, self.limits, self._elapsed(), self._budget()))
        rate = self._tokens / max(self._step_seconds, 1e-9)
        if self.world > 1:  # DDP keeps the replicas identical; a checksum per rank shows it did
            checksum = sum(float(w.double().sum()) for w in self.task.model.state_dict().values())
            if len(set(rank_values(self.device, checksum))) > 1:
                raise MTError("the processes ended with different weights: please report this as a bug")
            if self.main:
                print(f"the weights of all {self.world} processes are identical (checksum {checksum:.6f})", flush=True)
        if self.main:
            print(f"stopped ({stopped}) at step {p.step}, epoch {p.epoch}; {self.task.describe_best(p.best_score)}; "
                  f"{rate:.0f} target tokens/s; checkpoints in {self.run.checkpoint_dir}", flush=True)
        if self.world > 1:
            dist.barrier()
        return TrainResult(p.step, p.epoch, p.best_score, stopped, rate, self._elapsed() / 60)

    def _validation_due(self, finished_epoch: bool) -> bool:
        """Every train.validate_every updates (or train.validate_minutes), or at an epoch's end when that comes
        sooner; at an epoch's end only once train.validate_min_steps updates followed the last validation (a tiny
        corpus's epochs are a few updates long: validating after each would count noise as plateaus)."""
        since, t = self.progress.step - self.progress.validated_step, self.limits
        return (since >= t.validate_every or self._validation_by_time
                or (finished_epoch and since >= t.validate_min_steps))

    def _minutes_since_validation_passed(self) -> bool:
        minutes = self.limits.validate_minutes
        return bool(minutes) and time.perf_counter() - self._last_validation >= minutes * 60

    def _time_to_validation(self, left_in_epoch: int) -> float:
        """Seconds of training until the next validation is due, at this session's seconds per step."""
        p, t = self.progress, self.limits
        since = p.step - p.validated_step
        steps = t.validate_every - since
        if since + left_in_epoch >= t.validate_min_steps:
            steps = min(steps, left_in_epoch)
        else:  # the first epoch end after validate_min_steps: about this far
            steps = min(steps, t.validate_min_steps - since)
        seconds = max(steps, 0) * self._step_seconds / max(self._steps, 1)
        if t.validate_minutes:
            seconds = min(seconds, t.validate_minutes * 60 - (time.perf_counter() - self._last_validation))
        return max(seconds, 0.0)

    def _train_epoch(self) -> bool:
        """Train on the rest of the current epoch; False when it stopped early (Ctrl-C, time budget, a validation
        due within the epoch)."""
        p = self.progress
        batches = self.task.epoch_batches(self.limits.seed * 1000 + p.epoch)
        batches = batches[: len(batches) - len(batches) % self.world][self.rank::self.world]  # this rank's share
        self._epoch_length = max(len(batches), 1)
        bar = tqdm(total=len(batches), initial=p.batch_in_epoch, desc=f"epoch {p.epoch + 1}", unit="batch",
                   disable=not self.main, dynamic_ncols=True, mininterval=1.0)
        stream = self._prefetched(batches[p.batch_in_epoch:])
        with closing(stream), bar:  # closed even when a step fails: an error message starts its own line
            for batch in stream:
                self._step(batch, bar)
                interrupted, no_time, self._validation_by_time = any_rank(
                    self.device, self.stop.requested, out_of_time(p, self._elapsed(), self._budget()),
                    self._minutes_since_validation_passed())
                if interrupted or no_time:
                    self.stop.requested = interrupted  # every rank takes the same way out of the loop
                    return False
                due = self._validation_by_time or p.step - p.validated_step >= self.limits.validate_every
                if due and p.batch_in_epoch < len(batches):
                    return False  # validate now; the epoch goes on after it
                minutes = self.limits.checkpoint_minutes
                if minutes and time.perf_counter() - self._last_checkpoint >= minutes * 60:
                    self._checkpoint()
        return p.batch_in_epoch >= len(batches)

    def _prefetched(self, batches: list[list[int]]) -> Iterator:
        """The task's batches, each read and padded in a worker thread while the step before it trains."""
        with ThreadPoolExecutor(1, thread_name_prefix="batches") as pool:
            ahead = deque(pool.submit(self.task.batch, indices) for indices in batches[:2])
            for indices in batches[2:]:
                yield ahead.popleft().result()
                ahead.append(pool.submit(self.task.batch, indices))
            while ahead:
                yield ahead.popleft().result()

    def _step(self, batch, bar: tqdm) -> None:
        p, t = self.progress, self.limits
        started = time.perf_counter()
        b = batch.to(self.device)
        loss = train_step(lambda: self._step_module(*b.model_inputs, targets=b.targets), b.n_tokens,
                          self.optimizer, self.schedule, p.step + 1, t.clip, self._precision)
        if self.ema:
            self.ema.update()
        self._step_seconds += time.perf_counter() - started
        self._steps += 1
        self._interval_loss += loss * b.n_tokens
        self._interval_tokens += b.n_tokens
        self._tokens += b.n_tokens * self.world
        p.step += 1
        p.batch_in_epoch += 1
        bar.update(1)
        if p.step % t.log_every == 0 or p.step == 1:
            rate = self._tokens / max(self._step_seconds, 1e-9)
            mean = self._interval_loss / self._interval_tokens
            self._interval_loss, self._interval_tokens = 0.0, 0
            lr = self.schedule.lr(p.step)
            next_validation = tqdm.format_interval(self._time_to_validation(bar.total - bar.n))
            bar.set_postfix(loss=f"{mean:.3f}", tok_s=f"{rate:.0f}", lr=f"{lr:.2e}", next_val=next_validation)
            if self.main:
                append_jsonl(self.run.log_path, {"kind": "train", "step": p.step, "epoch": p.epoch,
                                                 "minutes": self._elapsed() / 60, "loss": mean, "lr": lr,
                                                 "tokens_per_s": rate})

    def _validate(self) -> None:
        """Rank 0 validates, logs, checkpoints and plots; every rank then takes its decisions (best score, bad
        validations, the schedule's state)."""
        p, started = self.progress, time.perf_counter()
        p.validated_step = p.step  # on every rank, and in the checkpoint below
        decision = [None]
        if self.main:
            loss, ppl = validation_loss(self.task.model, (b.to(self.device) for b in self.task.val_batches))
            v = self.task.validate(loss)
            improved = v.score > p.best_score
            loss_progress = improves(-loss, -p.best_val_loss, self.limits.plateau_threshold)  # the plateau's rule
            p.best_score = max(v.score, p.best_score)
            p.best_val_loss = loss if loss_progress else p.best_val_loss
            p.bad_validations = 0 if improved or loss_progress else p.bad_validations + 1
            watched = -loss if self.limits.plateau_metric == "loss" else v.score
            decayed = self.schedule.observe(watched, p.step)
            ema_record, ema_summary, ema_improved = self._validate_average()
            p.val_seconds = time.perf_counter() - started  # before the checkpoint: a resumed run reserves it too
            rdrop_record = self._check_rdrop_budget()
            append_jsonl(self.run.log_path, {"kind": "valid", "step": p.step, "epoch": p.epoch,
                                             "minutes": self._elapsed() / 60, "val_loss": loss, "val_ppl": ppl,
                                             **v.record, **ema_record, **rdrop_record,
                                             "lr": self.schedule.lr(p.step + 1), "seconds": p.val_seconds})
            summary = " ".join(x for x in (f"val loss {loss:.3f} ppl {ppl:.2f}", v.summary) if x)
            tqdm.write(f"step {p.step} epoch {p.epoch}: {summary}{' (best)' if improved else ''}"
                       f"{' lr decayed' if decayed else ''}{ema_summary}"
                       f"{f' | e.g. {v.example!r}' if v.example else ''}")
            self._checkpoint(best=improved, validated=True, best_ema=ema_improved)
            plot_curves(self.run.log_path, self.run.plot_dir / "curves.png")
            decision = [(p.best_score, p.best_val_loss, p.bad_validations, self.schedule.state_dict(),
                         p.rdrop_checked, p.rdrop_off)]
        self.task.model.train()
        if self.world > 1:
            dist.broadcast_object_list(decision, src=0)
            p.best_score, p.best_val_loss, p.bad_validations, schedule, p.rdrop_checked, p.rdrop_off = decision[0]
            self.schedule.load_state_dict(schedule)
        self._apply_rdrop_choice()
        p.val_seconds = time.perf_counter() - started  # on every rank, now with the checkpoint and plot included
        self._last_checkpoint = self._last_validation = time.perf_counter()
        self._validation_by_time = False

    def _check_rdrop_budget(self) -> dict[str, float]:
        """train.rdrop_min_epochs (rank 0, at each validation): R-Drop doubles the cost of an update, and a run cut
        by the time budget long before its learning rate has decayed loses more than R-Drop gains. Once two
        validations of this session give the pace, R-Drop stays on only if the budget holds that many epochs at
        it (with train.rdrop_from_epoch: measured from where R-Drop started); the choice is final (saved with the
        progress) and logged. Asked of the task's loss, not of train.rdrop_alpha: a language model's loss has no
        R-Drop whatever the config says. Returns the log record's fields."""
        p, t = self.progress, self.limits
        now = self._position()
        earlier, self._pace_mark = self._pace_mark, now
        if p.rdrop_checked or earlier is None or not (self.task.loss.rdrop and t.rdrop_min_epochs and self._budget()):
            return {}
        expected = epochs_in_budget(*now, self._budget(), earlier)
        p.rdrop_checked, p.rdrop_off = True, expected < t.rdrop_min_epochs
        tqdm.write(f"R-Drop {'off from here on' if p.rdrop_off else 'stays on'}: at its pace the time budget holds "
                   f"about {expected:.1f} epochs, {'fewer than' if p.rdrop_off else 'at least'} "
                   f"train.rdrop_min_epochs={t.rdrop_min_epochs}")
        return {"rdrop_expected_epochs": expected, "rdrop_off": float(p.rdrop_off)}

    def _position(self) -> tuple[float, float]:
        """(epochs trained, fractions included; seconds of the run): what the budget check's pace is made of."""
        p = self.progress
        return p.epoch + p.batch_in_epoch / self._epoch_length, self._elapsed()

    def _apply_rdrop_choice(self) -> None:
        """R-Drop's weight from here on: off before epoch train.rdrop_from_epoch and once the budget check turned
        it off. Set on the module DDP wraps: every rank's next forward pass follows it. When R-Drop starts within
        this session, the budget check measures its pace from here."""
        p = self.progress
        on = bool(self._rdrop_alpha) and not p.rdrop_off and p.epoch + 1 >= self.limits.rdrop_from_epoch
        starts = on and not self.task.loss.rdrop  # never at a session's start: the loss begins with R-Drop's weight
        self.task.loss.rdrop = self._rdrop_alpha if on else 0.0
        if starts:
            self._pace_mark = self._position()
            if self.main:
                tqdm.write(f"R-Drop on from epoch {p.epoch + 1} (train.rdrop_from_epoch={self.limits.rdrop_from_epoch})")

    def _validate_average(self) -> tuple[dict[str, float], str, bool]:
        """train.ema_decay: the weight average validated like the trained weights (which alone steer the schedule
        and early stopping); returns its fields of the log record ("ema_val_loss", "ema_val_bleu", ...), the
        console summary and whether it reached its best score."""
        if not self.ema:
            return {}, "", False
        p = self.progress
        with self.ema.applied():
            loss, _ = validation_loss(self.task.model, (b.to(self.device) for b in self.task.val_batches))
            v = self.task.validate(loss)
        improved = v.score > p.best_ema_score
        p.best_ema_score = max(v.score, p.best_ema_score)
        record = {f"ema_{k}": value for k, value in {"val_loss": loss, **v.record}.items()}
        summary = " ".join(x for x in (f"val loss {loss:.3f}", v.summary) if x)
        return record, f" | average: {summary}{' (best)' if improved else ''}", improved
