"""The training loop that every training command runs: ``mt train`` (``mt.tasks.translation``) and ``mt pretrain``
(``mt.tasks.language_model``) differ only in the ``TrainingTask`` and the hooks they hand to ``Trainer``.

What the loop owns, so that every task has it:
- resume from ``last.pt``, falling back to ``best.pt`` when ``last.pt`` is damaged; stale temporary files of a
  killed run are removed; every checkpoint write is atomic;
- the step loop with a progress bar, the learning-rate schedule, gradient clipping, the JSONL log and curves;
- validation every ``train.validate_every`` updates or ``train.validate_minutes`` (mid-epoch when due), at an
  epoch's end when that comes sooner (after ``train.validate_min_steps`` updates), and when training stops;
  ``best.pt``;
- stopping: ``train.max_epochs``, early stopping, ``train.max_minutes`` with room kept for the final
  validation, Ctrl-C / SIGTERM with a complete checkpoint, and under ``torchrun`` the ranks' agreement on all of
  these (each rank takes every N-th batch; rank 0 alone validates and writes files).
Recipes plug in through ``mt.train.hooks.Hook``; the loop names none of them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from mt import __version__
from mt.checkpoint import load_checkpoint, save_checkpoint
from mt.config import Config, config_from_dict, config_to_dict
from mt.device import autocast, resolve_precision
from mt.errors import MTError
from mt.files import append_jsonl, remove_stale_temporaries
from mt.plots import LiveCurves
from mt.run import RunDir
from mt.train.hooks import Hook
from mt.train.progress import Progress, TrainResult
from mt.train.schedule import LRSchedule, improves
from mt.train.step import make_optimizer, train_step
from mt.train.stopping import (
    StopFlag,
    any_rank,
    out_of_time,
    rank0_decides,
    same_resumed_step,
    same_weights,
    stop_reason,
)
from mt.train.task import TrainingTask, Validation

__all__ = ["Trainer"]

log = logging.getLogger("mt")


class Trainer:
    def __init__(self, task: TrainingTask, cfg: Config, run: RunDir, device: torch.device,
                 hooks: Sequence[Hook] = ()):
        self.task, self.cfg, self.train_cfg, self.run, self.device = task, cfg, cfg.train, run, device
        self.hooks = list(hooks)
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.is_main = self.rank == 0  # rank 0 alone validates and writes files
        self.optimizer = make_optimizer(task.model.parameters(), self.train_cfg.lr, self.train_cfg.weight_decay)
        self.schedule = LRSchedule(self.train_cfg)
        self.progress = Progress()
        self.budget = self.train_cfg.max_minutes * 60.0  # seconds; 0: no time budget
        self.stop = StopFlag()
        self._started = time.perf_counter()  # the run's clock, counting earlier sessions' time once resumed
        self._last_checkpoint = self._last_validation = time.perf_counter()  # validate_minutes counts from the latter
        self._validation_by_time = False  # train.validate_minutes passed (the ranks agreed on it)
        self.epoch_length = 1  # batches of the current epoch on this rank
        self.session_steps, self.step_seconds = 0, 0.0  # this session's updates and their time, validation apart
        self._tokens = 0  # target tokens of this session's updates, all ranks together
        self._interval_loss, self._interval_tokens = 0.0, 0  # token-weighted mean loss since the last log record

    # ------------------------------------------------------------------ what hooks may use

    def elapsed(self) -> float:
        """Seconds of the run, earlier sessions included."""
        return time.perf_counter() - self._started

    def log_record(self, kind: str, fields: dict[str, Any]) -> None:
        """Append a record of ``kind`` to RUN/train_log.jsonl (rank 0 only), with the step, epoch and minute."""
        if self.is_main:
            p = self.progress
            record = {"kind": kind, "step": p.step, "epoch": p.epoch, "minutes": self.elapsed() / 60, **fields}
            append_jsonl(self.run.log_path, record)
            for hook in self.hooks:
                hook.record(self, record)

    def weights_state(self) -> dict[str, Any]:
        """What a checkpoint holds besides the optimizer's, the schedule's and the hooks' state: the weights, the
        config, the progress and the task's extras (e.g. the tokenizer checksum)."""
        self.progress.train_seconds = self.elapsed()
        return {"model": self.task.model.state_dict(), "progress": asdict(self.progress),
                "config": config_to_dict(self.cfg), "version": __version__, **self.task.checkpoint_extras()}

    def score(self, weights: dict[str, torch.Tensor]) -> Validation:
        """The task's validation of ``weights`` (loaded into the task's model, which keeps them)."""
        self.task.model.load_state_dict(weights)
        loss, _ = self.task.loss.validation_loss(b.to(self.device) for b in self.task.val_batches)
        return self.task.validate(loss)

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
            saved = {**state["config"]["model"], "backend": self.cfg.model.backend}  # the same weights either way
            if config_to_dict(config_from_dict({"model": saved}, str(path)))["model"] != config_to_dict(self.cfg)["model"]:
                raise MTError(f"{path} has a different model config than the one given; start a new RUN, "
                              "or train with the run's own config")
            self.task.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            self.progress = Progress.from_dict(state["progress"])
            for hook in self.hooks:
                hook.load(state)
            torch.set_rng_state(state["rng"].cpu())
            return path
        return None

    def _checkpoint(self, best: bool = False) -> None:
        """last.pt (and best.pt): everything a resumed run needs."""
        if not self.is_main:
            return
        state = {**self.weights_state(), "optimizer": self.optimizer.state_dict(),
                 "schedule": self.schedule.state_dict(), "rng": torch.get_rng_state(),
                 "hooks": {h.name: h.state() for h in self.hooks if h.name and h.state() is not None}}
        save_checkpoint(state, self.run.checkpoint_dir / "last.pt")
        if best:
            save_checkpoint(state, self.run.checkpoint_dir / "best.pt")
        self._last_checkpoint = time.perf_counter()

    def _prepare_folder(self) -> None:
        try:
            self.run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MTError(f"cannot create {self.run.checkpoint_dir}: {e.strerror or e}; "
                          f"is {self.run.root} writable?") from None
        remove_stale_temporaries(self.run.checkpoint_dir)

    # ------------------------------------------------------------------ the loop

    def fit(self, resumed_from: Path | None = None) -> TrainResult:
        """Train until a stop reason; ``resumed_from``: what ``resume()`` returned, for the first message."""
        p = self.progress
        if self.is_main:
            print(f"resuming from {resumed_from.name}: step {p.step}, epoch {p.epoch + 1}, batch {p.batch_in_epoch} "
                  "of that epoch" if resumed_from else self.task.describe(), flush=True)
            self._prepare_folder()
        self._start_session()
        stopped = self._stopping()
        if stopped and self.is_main:
            print(f"nothing left to train: this run already reached its limit ({stopped}); raise train.max_epochs, "
                  "train.max_minutes or train.patience to continue", flush=True)
        self.task.model.train()
        with self.stop:
            while stopped is None:
                finished_epoch = self._train_epoch()
                if self.stop.requested:
                    self._checkpoint()
                    stopped = "interrupted"
                    break
                if finished_epoch:
                    p.epoch, p.batch_in_epoch = p.epoch + 1, 0
                stopped = self._stopping()
                if p.step > p.validated_step and (stopped or self._validation_due(finished_epoch)):
                    self._validate()  # the last one too, whether due or not
                    stopped = self._stopping()
        result = self._finish(stopped)
        for hook in self.hooks:
            hook.end(self, result)
        return result

    def _start_session(self) -> None:
        """What every session sets up before its first update: DDP, precision, clocks, the hooks."""
        self._step_module = self.task.loss
        same_resumed_step(self.device, self.progress.step, self.run.root)
        if self.world > 1:
            ids = [self.device] if self.device.type == "cuda" else None
            self._step_module = nn.parallel.DistributedDataParallel(self.task.loss, device_ids=ids)
        precision, why = resolve_precision(self.train_cfg.precision, self.device)
        if self.is_main:
            print(f"precision: {precision} ({why})", flush=True)
        self._precision = autocast(self.device, precision)
        self._started = time.perf_counter() - self.progress.train_seconds
        self._last_checkpoint = self._last_validation = time.perf_counter()
        self.curves = LiveCurves(self.run.log_path, self.run.plot_dir / "curves.png")
        for hook in self.hooks:
            hook.start(self)

    def _stopping(self) -> str | None:
        return rank0_decides(stop_reason(self.progress, self.train_cfg, self.elapsed(), self.budget))

    def _finish(self, stopped: str) -> TrainResult:
        p = self.progress
        rate = self._tokens / max(self.step_seconds, 1e-9)
        if self.world > 1:  # DDP keeps the replicas identical; a checksum per rank shows it did
            checksum = same_weights(self.device, self.task.model)
            if self.is_main:
                print(f"the weights of all {self.world} processes are identical (checksum {checksum:.6f})", flush=True)
        if self.is_main:
            self.curves.flush()
            print(f"stopped ({stopped}) at step {p.step}, epoch {p.epoch}; {self.task.describe_best(p.best_score)}; "
                  f"{rate:.0f} target tokens/s; checkpoints in {self.run.checkpoint_dir}", flush=True)
        if self.world > 1:
            dist.barrier()
        return TrainResult(p.step, p.epoch, p.best_score, stopped, rate, self.elapsed() / 60)

    def _validation_due(self, finished_epoch: bool) -> bool:
        """Every train.validate_every updates (or train.validate_minutes), or at an epoch's end when that comes
        sooner; at an epoch's end only once train.validate_min_steps updates followed the last validation (a tiny
        corpus's epochs are a few updates long: validating after each would count noise as plateaus)."""
        since, t = self.progress.step - self.progress.validated_step, self.train_cfg
        return (since >= t.validate_every or self._validation_by_time
                or (finished_epoch and since >= t.validate_min_steps))

    def _minutes_since_validation_passed(self) -> bool:
        minutes = self.train_cfg.validate_minutes
        return bool(minutes) and time.perf_counter() - self._last_validation >= minutes * 60

    def _time_to_validation(self, left_in_epoch: int) -> float:
        """Seconds of training until the next validation is due, at this session's seconds per step."""
        p, t = self.progress, self.train_cfg
        since = p.step - p.validated_step
        steps = t.validate_every - since
        if since + left_in_epoch >= t.validate_min_steps:
            steps = min(steps, left_in_epoch)
        else:  # the first epoch end after validate_min_steps: about this far
            steps = min(steps, t.validate_min_steps - since)
        seconds = max(steps, 0) * self.step_seconds / max(self.session_steps, 1)
        if t.validate_minutes:
            seconds = min(seconds, t.validate_minutes * 60 - (time.perf_counter() - self._last_validation))
        return max(seconds, 0.0)

    def _train_epoch(self) -> bool:
        """Train on the rest of the current epoch; False when it stopped early (Ctrl-C, time budget, a validation
        due within the epoch)."""
        p = self.progress
        batches = self.task.epoch_batches(self.train_cfg.seed * 1000 + p.epoch)
        batches = batches[: len(batches) - len(batches) % self.world][self.rank::self.world]  # this rank's share
        self.epoch_length = max(len(batches), 1)
        bar = tqdm(total=len(batches), initial=p.batch_in_epoch, desc=f"epoch {p.epoch + 1}", unit="batch",
                   disable=not self.is_main, dynamic_ncols=True, mininterval=1.0)
        stream = self._prefetched(batches[p.batch_in_epoch:])
        with closing(stream), bar:  # closed even when a step fails: an error message starts its own line
            for batch in stream:
                self._step(batch, bar)
                interrupted, no_time, self._validation_by_time = any_rank(
                    self.device, self.stop.requested, out_of_time(p, self.elapsed(), self.budget),
                    self._minutes_since_validation_passed())
                if interrupted or no_time:
                    self.stop.requested = interrupted  # every rank takes the same way out of the loop
                    return False
                due = self._validation_by_time or p.step - p.validated_step >= self.train_cfg.validate_every
                if due and p.batch_in_epoch < len(batches):
                    return False  # validate now; the epoch goes on after it
                minutes = self.train_cfg.checkpoint_minutes
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
        p, t = self.progress, self.train_cfg
        started = time.perf_counter()
        b = batch.to(self.device)
        loss = train_step(lambda: self._step_module(*b.model_inputs, targets=b.targets), b.n_tokens,
                          self.optimizer, self.schedule, p.step + 1, t.clip, self._precision)
        self.step_seconds += time.perf_counter() - started
        self.session_steps += 1
        self._interval_loss += loss * b.n_tokens
        self._interval_tokens += b.n_tokens
        self._tokens += b.n_tokens * self.world
        p.step += 1
        p.batch_in_epoch += 1
        bar.update(1)
        for hook in self.hooks:
            hook.after_step(self)
        if p.step % t.log_every == 0 or p.step == 1:
            rate = self._tokens / max(self.step_seconds, 1e-9)
            mean = self._interval_loss / self._interval_tokens
            self._interval_loss, self._interval_tokens = 0.0, 0
            lr = self.schedule.lr(p.step)
            next_validation = tqdm.format_interval(self._time_to_validation(bar.total - bar.n))
            bar.set_postfix(loss=f"{mean:.3f}", tok_s=f"{rate:.0f}", lr=f"{lr:.2e}", next_val=next_validation)
            self.log_record("train", {"loss": mean, "lr": lr, "tokens_per_s": rate})

    def _validate(self) -> None:
        """Rank 0 validates, logs, checkpoints and plots; every rank then takes its decisions (best score, bad
        validations, the schedule's state) and runs the hooks."""
        p, started = self.progress, time.perf_counter()
        p.validated_step = p.step  # on every rank, and in the checkpoint below
        decision = [None]
        if self.is_main:
            loss, ppl = self.task.loss.validation_loss(b.to(self.device) for b in self.task.val_batches)
            v = self.task.validate(loss)
            improved = v.score > p.best_score
            loss_progress = improves(-loss, -p.best_val_loss, self.train_cfg.plateau_threshold)  # the plateau's rule
            p.best_score = max(v.score, p.best_score)
            p.best_val_loss = loss if loss_progress else p.best_val_loss
            p.bad_validations = 0 if improved or loss_progress else p.bad_validations + 1
            watched = -loss if self.train_cfg.plateau_metric == "loss" else v.score
            decayed = self.schedule.observe(watched, p.step)
            p.val_seconds = time.perf_counter() - started  # before the checkpoint: a resumed run reserves it too
            self.log_record("valid", {"val_loss": loss, "val_ppl": ppl, **v.record,
                      "lr": self.schedule.lr(p.step + 1), "seconds": p.val_seconds})
            summary = " ".join(x for x in (f"val loss {loss:.3f} ppl {ppl:.2f}", v.summary) if x)
            tqdm.write(f"step {p.step} epoch {p.epoch}: {summary}{' (best)' if improved else ''}"
                       f"{' lr decayed' if decayed else ''}{f' | e.g. {v.example!r}' if v.example else ''}")
            self._checkpoint(best=improved)
            decision = [(p.best_score, p.best_val_loss, p.bad_validations, self.schedule.state_dict())]
        self.task.model.train()
        if self.world > 1:
            dist.broadcast_object_list(decision, src=0)
            p.best_score, p.best_val_loss, p.bad_validations, schedule = decision[0]
            self.schedule.load_state_dict(schedule)
        for hook in self.hooks:
            hook.after_validation(self)
        if self.is_main:
            self.curves.validated()
        p.val_seconds = time.perf_counter() - started  # on every rank, now with the checkpoint and plot included
        self._last_checkpoint = self._last_validation = time.perf_counter()
        self._validation_by_time = False
