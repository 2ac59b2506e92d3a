"""Training speed: the RUN's configured model on real batches of its training split for a fixed number of steps
(after a few warm-up steps), without touching its checkpoints. Two arms (backends or precisions) train copies of
one model on the same batches, alternating batch by batch and which goes first, so that a machine whose speed
drifts treats both alike; each arm's target tokens/s, and the median of the per-step speed ratios."""

from __future__ import annotations

import copy
import statistics
import time
from collections import defaultdict

import torch

from bench.memory import memory_record
from mt.backends import Backend, resolve_backend
from mt.config import apply_overrides
from mt.data.batching import collate, make_batches
from mt.device import autocast, bf16_units, resolve_device, resolve_precision, use_threads
from mt.profiling import ATTENTION, CLIP, DECODER_LSTM, ENCODER, OPTIMIZER, OUTPUT_LOSS
from mt.run import RunDir
from mt.train.schedule import LRSchedule
from mt.train.step import make_optimizer, seed_everything, train_step

__all__ = ["TrainingSetup", "bench_training", "compare_training"]


class TrainingSetup:
    """What every training bench needs: the RUN's config with overrides, device, training split, the schedule,
    the epoch's batches and fresh (seeded) models."""

    def __init__(self, run: RunDir, overrides: list[str]):
        self.cfg = apply_overrides(run.config(), overrides)
        self.train = t = self.cfg.train
        self.device = resolve_device(t.device)
        use_threads(self.device, t.threads)
        self.meta = run.meta()
        split = run.encoded()["train"]
        self.src, self.tgt = split["src_ids"], split["tgt_ids"]
        self.schedule = LRSchedule(t)
        self.batches = make_batches([len(s) for s in self.src], [len(s) for s in self.tgt], t.batch_tokens,
                                    shuffle=True, seed=t.seed)

    def backend(self, name: str | None) -> Backend:
        """``--backend`` (None: the run's model.backend)."""
        return resolve_backend(name or self.cfg.model.backend)

    def model(self, backend: Backend):
        seed_everything(self.train.seed)
        return backend.build_model(self.cfg.model, self.meta["src_vocab_size"], self.meta["tgt_vocab_size"]) \
            .to(self.device).train()

    def batch(self, idx: list[int]):
        return collate([self.src[j] for j in idx], [self.tgt[j] for j in idx], idx).to(self.device)


class _Arm:
    """One model training: its backend's loss, its optimizer and its autocast context."""

    def __init__(self, setup: TrainingSetup, model, backend: Backend, precision: str):
        t = setup.train
        self.loss = backend.loss(model, t.label_smoothing, t.rdrop_alpha)
        self.optimizer = make_optimizer(model.parameters(), t.lr, t.weight_decay)
        self.autocast = autocast(setup.device, precision)
        self.setup, self.seconds = setup, []

    def step(self, b, step: int) -> float:
        """One update on batch ``b`` (on the device) -> its seconds."""
        start = time.perf_counter()
        train_step(lambda: self.loss(*b.model_inputs, targets=b.targets), b.n_tokens, self.optimizer,
                   self.setup.schedule, step, self.setup.train.clip, self.autocast)
        if self.setup.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def compare_training(run: RunDir, overrides: list[str], steps: int, warmup: int,
                     arms: list[tuple[str, str, str]]) -> dict:
    """``arms``: (label, backend, precision) per arm; every arm starts from the same weights."""
    setup = TrainingSetup(run, overrides)
    first = setup.model(setup.backend(arms[0][1]))
    trainers = []
    for _, name, precision in arms:
        backend = setup.backend(name)
        model = backend.build_model(setup.cfg.model, setup.meta["src_vocab_size"], setup.meta["tgt_vocab_size"],
                                    init_weights=False)
        model.load_state_dict(copy.deepcopy(first.state_dict()))
        trainers.append(_Arm(setup, model.to(setup.device).train(), backend, precision))
    tokens = 0
    for i, idx in enumerate(setup.batches[: warmup + steps]):
        b = setup.batch(idx)
        order = range(len(trainers)) if i % 2 == 0 else reversed(range(len(trainers)))
        for k in order:
            seconds = trainers[k].step(b, i + 1)
            if i >= warmup:
                trainers[k].seconds.append(seconds)
        tokens += b.n_tokens if i >= warmup else 0
    base = trainers[0].seconds
    return {
        "what": "train", "device": str(setup.device), "threads": torch.get_num_threads(), "steps": steps,
        "bf16_units": bf16_units(setup.device), "batch_tokens": setup.train.batch_tokens,
        "params": first.num_parameters(), "rdrop_alpha": setup.train.rdrop_alpha,
        "arms": {label: {"backend": setup.backend(backend).name, "precision": precision,
                         "tokens_per_s": round(tokens / sum(arm.seconds), 1),
                         "median_step_speed_vs_first": round(statistics.median(
                             f / s for f, s in zip(base, arm.seconds)), 3)}
                 for (label, backend, precision), arm in zip(arms, trainers)},
        **memory_record(),
    }


def bench_training(run: RunDir, overrides: list[str], steps: int, warmup: int, backend: str | None,
                   profile: bool = False) -> dict:
    """One arm (``--backend``, the configured precision); with ``profile``, where the time of a step goes."""
    setup = TrainingSetup(run, overrides)
    precision = resolve_precision(setup.train.precision, setup.device)[0]
    chosen = setup.backend(backend)
    arm = _Arm(setup, setup.model(chosen), chosen, precision)
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if profile else None
    tokens = sentences = 0
    for i, idx in enumerate(setup.batches[: warmup + steps]):
        if i == warmup and profiler:
            profiler.start()
        b = setup.batch(idx)
        seconds = arm.step(b, i + 1)
        if i >= warmup:
            arm.seconds.append(seconds)
            tokens, sentences = tokens + b.n_tokens, sentences + len(idx)
    if profiler:
        profiler.stop()
    seconds = sum(arm.seconds)
    result = {"what": "train-profile" if profile else "train", "device": str(setup.device),
              "backend": chosen.name, "threads": torch.get_num_threads(), "precision": precision,
              "steps": steps, "tokens_per_s": round(tokens / seconds, 1),
              "sentences_per_s": round(sentences / seconds, 1), **memory_record()}
    if profiler:
        result.update(time_split(profiler, steps), **phase_split(profiler, steps, seconds))
    return result


# Kernels that multiply matrices (the fused RNN kernels of the encoder included): the rest is overhead to shrink.
_MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::addmv_", "aten::mv",
               "aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward"}


def time_split(prof, steps: int) -> dict:
    """Self CPU time per step of a torch.profiler run: matrix-multiply kernels, everything else, top operators."""
    ops = sorted(((e.key, e.self_cpu_time_total / 1000 / steps) for e in prof.key_averages()), key=lambda kv: -kv[1])
    matmul = sum(ms for key, ms in ops if key in _MATMUL_OPS)
    total = sum(ms for _, ms in ops)
    return {"profiled_ms_per_step": round(total, 1), "matmul_ms_per_step": round(matmul, 1),
            "matmul_share": round(matmul / total, 3), "top_ops_ms": {k: round(ms, 1) for k, ms in ops[:12]}}


_PHASE_NAMES = {ENCODER: "encoder", DECODER_LSTM: "decoder LSTM", ATTENTION: "attention",
                OUTPUT_LOSS: "output layer + loss", CLIP: "gradient clipping", OPTIMIZER: "optimizer"}
# Autograd nodes of the fused RNN kernels: the encoder's backward pass (forward ranges do not cover it).
_RNN_BACKWARD_NODES = ("RnnLayerBackward", "CudnnRnnBackward", "MiopenRnnBackward")
OTHER_OPS = "other ops"
OVERHEAD = "python and framework"


def phase_split(prof, steps: int, wall_seconds: float) -> dict:
    """Wall milliseconds per step by phase of the model (the ranges of mt.profiling, which the fast backend marks).

    Every operator's own time counts toward the innermost named range around it; in the backward pass the
    encoder is recognised by its RNN kernels' autograd nodes. "other ops" are the rest: embeddings, input
    projections, the bridge, dropout masks, and what runs outside the named ranges (all of the reference backend
    but clipping and the optimizer). "python and framework" is the time in no operator: Python, the autograd
    engine's bookkeeping, the profiler's own cost."""
    phases: dict[str, float] = defaultdict(float)
    memo: dict[int, str] = {}

    def phase_of(event) -> str:
        chain, node, found = [], event, OTHER_OPS
        while node is not None:
            if id(node) in memo:
                found = memo[id(node)]
                break
            chain.append(node)
            if node.name in _PHASE_NAMES:
                found = _PHASE_NAMES[node.name]
                break
            if node.name.startswith("autograd::engine::evaluate_function") and \
                    any(key in node.name for key in _RNN_BACKWARD_NODES):
                found = _PHASE_NAMES[ENCODER]
                break
            node = node.cpu_parent
        for n in chain:
            memo[id(n)] = found
        return found

    ops_total = 0.0
    for event in prof.events():
        if event.name.startswith("aten::"):  # an operator: its own time, its callees' counted separately
            ms = event.self_cpu_time_total / 1000
            phases[phase_of(event)] += ms
            ops_total += ms
    wall_ms = wall_seconds * 1000
    phases[OVERHEAD] = wall_ms - ops_total
    per_step = {name: round(ms / steps, 1) for name, ms in sorted(phases.items(), key=lambda kv: -kv[1])}
    return {"wall_ms_per_step": round(wall_ms / steps, 1), "phases_ms_per_step": per_step}
