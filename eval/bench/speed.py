"""`make bench`: training and decoding speed, one JSON line each.

- train: the RUN's configured model on real batches of its training split for a fixed number of steps (after
  a few warm-up steps), without touching its checkpoints: target tokens/s, sentences/s, peak memory. By default
  in bf16 and in fp32 side by side (two copies, alternating batches), naming the one train.precision picks.
- decode: the RUN's trained model translating a test split with greedy search and beam search, in bf16 and in
  fp32: sentences/s, wall time with and without loading the model, BLEU. Needs a trained RUN (skipped with a
  note otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from eval.bench.joey import JoeyFolder, bench_against_joey
from mt.config import apply_overrides
from mt.data.batching import collate, make_batches
from mt.device import autocast, bf16_units, resolve_device, resolve_precision, use_threads
from mt.errors import MTError
from mt.model import activations, build_model, top_tokens
from mt.model.loss import SummedLoss
from mt.profiling import ATTENTION, CLIP, DECODER_LSTM, ENCODER, OPTIMIZER, OUTPUT_LOSS
from mt.run import RunDir
from mt.train.schedule import LRSchedule
from mt.train.step import make_optimizer, seed_everything, train_step

__all__ = ["bench_training", "main"]


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
    """Wall milliseconds per step by phase of the model (the ranges of mt.profiling).

    Every operator's own time counts toward the innermost named range around it; in the backward pass the
    encoder is recognised by its RNN kernels' autograd nodes. "other ops" are the rest: embeddings, input
    projections, the bridge, dropout masks, and the backward passes that autograd runs for the generic
    (unfused) decoder. "python and framework" is the time in no operator: Python, the autograd engine's
    bookkeeping, the profiler's own cost."""
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


class _Setup:
    """What every training bench needs: the RUN's config with overrides, device, training split, a fresh model
    (seeded), the schedule, the epoch's batches and the autocast context."""

    def __init__(self, run: RunDir, overrides: list[str]):
        self.cfg = apply_overrides(run.config(), overrides)
        self.train = t = self.cfg.train
        self.device = resolve_device(t.device)
        use_threads(self.device, t.threads)
        self.meta = run.meta()
        split = run.encoded()["train"]
        self.src, self.tgt = split["src_ids"], split["tgt_ids"]
        seed_everything(t.seed)
        self.schedule = LRSchedule(t)
        self.batches = make_batches([len(s) for s in self.src], [len(s) for s in self.tgt], t.batch_tokens,
                                    shuffle=True, seed=t.seed)
        self.autocast = autocast(self.device, t.precision)

    def model(self):
        return build_model(self.cfg.model, self.meta["src_vocab_size"], self.meta["tgt_vocab_size"]).to(self.device)

    def batch(self, idx: list[int]):
        return collate([self.src[j] for j in idx], [self.tgt[j] for j in idx], idx).to(self.device)


def bench_training(run: RunDir, overrides: list[str], steps: int, warmup: int, baseline: bool = False,
                   profile: bool = False) -> dict:
    setup = _Setup(run, overrides)
    t, device, schedule, autocast = setup.train, setup.device, setup.schedule, setup.autocast
    model = setup.model()
    if baseline:  # the slower generic paths: packed-sequence encoder, autograd through the decoder steps
        model.encoder.chunked = model.decoder.fused = False
    module = SummedLoss(model, t.label_smoothing, t.rdrop_alpha)
    optimizer = make_optimizer(model.parameters(), t.lr, t.weight_decay)
    model.train()
    tokens = sentences = 0
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if profile else None
    for i, idx in enumerate(setup.batches[: warmup + steps]):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            if profiler:
                profiler.start()
            start = time.perf_counter()
        b = setup.batch(idx)
        train_step(lambda: module(*b.model_inputs, targets=b.targets), b.n_tokens,  # noqa: B023
                   optimizer, schedule, i + 1, t.clip, autocast)
        if i >= warmup:
            tokens += b.n_tokens
            sentences += len(idx)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if profiler:
        profiler.stop()
    result = {
        "what": "train" + ("-baseline" if baseline else ""), "device": str(device),
        "threads": torch.get_num_threads(), "precision": resolve_precision(t.precision, device)[0],
        "params": model.num_parameters(), "batch_tokens": t.batch_tokens, "steps": steps,
        "tokens_per_s": round(tokens / seconds, 1), "sentences_per_s": round(sentences / seconds, 1),
        "tokens_per_batch": round(tokens / steps, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    }
    if device.type == "cuda":
        result["peak_cuda_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    if profiler:
        result.update(time_split(profiler, steps), **phase_split(profiler, steps, seconds),
                      what=result["what"] + "-profile")
    return result


class _Switch:
    """A context (autocast, or nullcontext) with a module's switch set, e.g. tanh through sigmoid
    (``mt.model.activations.VIA_SIGMOID``) or by torch.tanh; the previous value is restored on leaving. Reusable:
    entered once per training step."""

    def __init__(self, context, module, flag: str, value: bool):
        self.context, self.module, self.flag, self.value = context, module, flag, value

    def __enter__(self):
        self.saved = getattr(self.module, self.flag)
        setattr(self.module, self.flag, self.value)
        return self.context.__enter__()

    def __exit__(self, *exc):
        setattr(self.module, self.flag, self.saved)
        return self.context.__exit__(*exc)


WARMUP_SENTENCES = 500  # decoded untimed before the first timed decode of each kind: a full batch of short lines
# what `--compare tanh|shortlist` switches: on (the default) and off
_SWITCHES = {"tanh": (activations, "VIA_SIGMOID"), "shortlist": (top_tokens, "SHORTLIST")}
_ARMS = {"paths": ["fused", "generic"], "precision": ["bf16", "fp32"], "tanh": ["tanh via sigmoid", "torch.tanh"],
         "shortlist": ["bf16 or int8 shortlist", "fp32 output multiply"]}  # shortlist: decoding only


def bench_compare(run: RunDir, overrides: list[str], steps: int, warmup: int, against: str = "paths") -> dict:
    """Two copies of one model trained on the same batches, alternating batch by batch (and which goes first),
    so that a machine whose speed drifts during the run treats both alike. ``against``: "paths", the fused paths
    vs the generic ones (``--baseline``); "precision", bf16 vs fp32 (the baseline); "tanh", tanh through
    sigmoid (the default) vs torch.tanh (the baseline)."""
    import copy
    import statistics

    setup = _Setup(run, overrides)
    t, device = setup.train, setup.device
    first = setup.model().train()
    second = copy.deepcopy(first)
    if against == "paths":
        second.encoder.chunked = second.decoder.fused = False
        contexts = [setup.autocast, setup.autocast]
    elif against == "tanh":
        contexts = [_Switch(setup.autocast, activations, "VIA_SIGMOID", v) for v in (True, False)]
    else:
        contexts = [autocast(device, "bf16"), autocast(device, "fp32")]
    arms = [(SummedLoss(m, t.label_smoothing, t.rdrop_alpha), make_optimizer(m.parameters(), t.lr, t.weight_decay), context)
            for m, context in zip((first, second), contexts)]
    seconds, tokens = [[], []], 0
    for i, idx in enumerate(setup.batches[: warmup + steps]):
        b = setup.batch(idx)
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):
            module, optimizer, context = arms[k]
            start = time.perf_counter()
            train_step(lambda: module(*b.model_inputs, targets=b.targets), b.n_tokens,  # noqa: B023
                       optimizer, setup.schedule, i + 1, t.clip, context)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                seconds[k].append(time.perf_counter() - start)
        if i >= warmup:
            tokens += b.n_tokens
    return {
        "what": "train-compare" if against == "paths" else f"train-compare-{against}", "device": str(device),
        "threads": torch.get_num_threads(), "steps": steps, "bf16_units": bf16_units(device),
        "precision": resolve_precision(t.precision, device)[0] if against != "precision" else "both",
        "arms": _ARMS[against],
        "tokens_per_s": round(tokens / sum(seconds[0]), 1),
        "tokens_per_s_baseline": round(tokens / sum(seconds[1]), 1),
        "speedup": round(sum(seconds[1]) / sum(seconds[0]), 3),
        "median_step_speedup": round(statistics.median(g / f for f, g in zip(*seconds)), 3),
    }


def bench_training_precisions(run: RunDir, overrides: list[str], steps: int, warmup: int) -> dict:
    """`make bench`'s training figure: bf16 and fp32 side by side (``bench_compare``), and which of the two
    ``train.precision`` picks on this machine (and why)."""
    compared = bench_compare(run, overrides, steps, warmup, "precision")
    train_cfg = apply_overrides(run.config(), overrides).train
    chosen, why = resolve_precision(train_cfg.precision, torch.device(compared["device"]))
    rates = {"bf16": compared["tokens_per_s"], "fp32": compared["tokens_per_s_baseline"]}
    return {"what": "train", "device": compared["device"], "threads": compared["threads"], "steps": steps,
            "precision": chosen, "precision_why": why, "tokens_per_s": rates[chosen],
            "tokens_per_s_bf16": rates["bf16"], "tokens_per_s_fp32": rates["fp32"],
            "bf16_speedup": compared["speedup"], "median_step_speedup": compared["median_step_speedup"],
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def _bench_precision(run: RunDir, precision: str) -> str:
    """--precision auto -> both where this machine has bf16 units, else config (emulated bf16 is many times
    slower: 20 training steps took over 9 minutes on AMD Zen 3), saying so on stderr; both, config as they are."""
    if precision != "auto":
        return precision
    if bf16_units(resolve_device(run.config().train.device)):
        return "both"
    print("bench: no bf16 units here, so fp32 only (bf16 would be emulated); --precision both times it anyway",
          file=sys.stderr)
    return "config"


def _shortlist_kind(translator) -> str | None:
    """Which shortlist the translator's search uses for its output layer: "bf16", "int8" or None."""
    decoder = getattr(translator.model, "decoder", None)  # None: e.g. an ensemble
    dtype = torch.bfloat16 if translator.precision == "bf16" else torch.float32
    shortlist = decoder.search_shortlist(dtype) if decoder is not None else None
    return {top_tokens.Bf16Logits: "bf16", top_tokens.Int8Logits: "int8"}.get(type(shortlist))


def bench_decoding(run: RunDir, split: str, beams: list[int], precisions: list[str] | None = None,
                   alternate: str | None = None) -> list[dict]:
    """Greedy/beam decoding of ``split`` for each beam size, in each of ``precisions`` (None: the configured
    decode.precision only); ``default`` marks what `mt translate` would use. ``alternate`` ("tanh" or
    "shortlist"): four decodes each, that switch on, off, off, on (tanh through sigmoid or torch.tanh; the output
    layer shortlisting in bf16 or int8 (bf16 or fp32 decoding), or multiplying in fp32)."""
    from eval.evaluate import split_texts
    from eval.scoring import score
    from mt.decode.translator import Translator

    sources, references = split_texts(run, split)
    module, flag = _SWITCHES[alternate or "tanh"]
    values = (True, False, False, True) if alternate else (getattr(module, flag),)
    results, warmed = [], set()
    for beam in beams:
        for precision, value in [(p, v) for p in precisions or [None] for v in values]:
            with _Switch(contextlib.nullcontext(), module, flag, value):
                if (beam, precision, value) not in warmed:  # a process's first decode of a kind runs slower
                    warm_up = Translator.from_run(run)  # (kernels and memory set up): untimed
                    warm_up.precision = precision or warm_up.precision
                    warm_up.translate(sources[:WARMUP_SENTENCES], beam=beam)
                    warmed.add((beam, precision, value))
                start = time.perf_counter()
                translator = Translator.from_run(run)
                default = translator.precision
                translator.precision = precision or default
                loaded = time.perf_counter()
                hyps = [t.text for t in translator.translate(sources, beam=beam)]
                switches = {"tanh": "via sigmoid" if activations.VIA_SIGMOID else "torch.tanh",
                            "shortlist": _shortlist_kind(translator)}
            done = time.perf_counter()
            results.append({
                "what": "decode", "split": split, "beam": beam, "precision": translator.precision, **switches,
                "default": translator.precision == default, "sentences": len(sources),
                "sentences_per_s": round(len(sources) / (done - loaded), 1), "seconds": round(done - loaded, 2),
                "seconds_with_loading": round(done - start, 2), "bleu": score(hyps, references)["bleu"],
                "threads": torch.get_num_threads(), "batch_tokens": translator.cfg.decode.batch_tokens,
                "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            })
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.bench", description=__doc__)
    p.add_argument("--run", required=True)
    p.add_argument("--steps", type=int, default=120, help="timed training steps (about one Multi30k epoch)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--what", default="train,decode", help="comma-separated: train, decode")
    p.add_argument("--baseline", action="store_true",
                   help="train with the generic paths instead (packed-sequence encoder, decoder steps through "
                        "autograd) to measure what the fused ones gain")
    p.add_argument("--compare", nargs="?", const="paths", choices=list(_ARMS),
                   help="train two copies side by side, alternating batch by batch, and report both rates (robust "
                        "to a machine whose speed drifts): the fused vs the generic paths (paths, the default), "
                        "bf16 vs fp32 (precision), or tanh through sigmoid vs torch.tanh (tanh; with --what "
                        "decode, decodes alternately with each); shortlist (--what decode only): the output "
                        "layer's bf16 or int8 shortlist vs its fp32 multiply, alternately")
    p.add_argument("--profile", action="store_true",
                   help="run the timed training steps under torch.profiler and report where the time goes "
                        "(matrix multiplies vs. the rest; tokens/s is then a little lower)")
    p.add_argument("--split", default="test_2016_flickr", help="test split for decoding")
    p.add_argument("--beams", default="1,5", help="comma-separated beam sizes for decoding")
    p.add_argument("--precision", choices=["auto", "both", "config"], default="auto",
                   help="both: train and decode in bf16 and in fp32 side by side, and mark the one the config's "
                        "precision: auto picks here; config: only the configured precision; auto (the default): "
                        "both where this machine has bf16 units, else config (bf16 is emulated there, many "
                        "times slower)")
    p.add_argument("--joey", metavar="DIR", help="also time Joey NMT from DIR (made by ../shared/reference/"
                   "run_joeynmt.sh DIR SECONDS) against `mt translate`, whole process, on Joey's test split")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for the training bench")
    args = p.parse_args(argv)
    run = RunDir.of(args.run)
    try:
        joey = JoeyFolder(Path(args.joey)) if args.joey and "decode" in args.what else None  # checked first
        if args.compare == "shortlist" and "train" in args.what:
            raise MTError("--compare shortlist compares decoding only: add --what decode")
        args.precision = _bench_precision(run, args.precision)
        if args.compare and "train" in args.what:
            print(json.dumps(bench_compare(run, args.overrides, args.steps, args.warmup, args.compare)), flush=True)
        elif "train" in args.what and args.precision == "both" and not (args.baseline or args.profile):
            print(json.dumps(bench_training_precisions(run, args.overrides, args.steps, args.warmup)), flush=True)
        elif "train" in args.what:
            print(json.dumps(bench_training(run, args.overrides, args.steps, args.warmup, args.baseline,
                                            args.profile)), flush=True)
        if "decode" in args.what and args.compare in (None, "tanh", "shortlist"):
            if not (run.checkpoint_dir / "best.pt").is_file():
                print(json.dumps({"what": "decode", "skipped": f"no trained model in {run.root} (make train)"}))
            else:
                precisions = ["bf16", "fp32"] if args.precision == "both" else None
                alternate = args.compare if args.compare in _SWITCHES else None
                for result in bench_decoding(run, args.split, [int(b) for b in args.beams.split(",")], precisions,
                                             alternate):
                    print(json.dumps(result), flush=True)
        if joey:
            for record in bench_against_joey(run.root, joey, [int(b) for b in args.beams.split(",")],
                                             run.root / "eval" / "bench-joey"):
                print(json.dumps(record), flush=True)
    except MTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
