"""`make bench`: training throughput (target tokens/s, sentences/s) and peak memory, printed as one JSON line.

Trains the RUN's configured model on real batches of its training split for a fixed number of steps (after a
few warm-up steps) without touching its checkpoints.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

from mt.batching import collate, make_batches
from mt.config import apply_overrides
from mt.errors import MTError
from mt.model import build_model
from mt.run import RunDir
from mt.schedule import LRSchedule
from mt.trainer import LabelSmoothedLoss, _device, _train_step

__all__ = ["bench_training", "main"]


def bench_training(run: RunDir, overrides: list[str], steps: int, warmup: int) -> dict:
    cfg = apply_overrides(run.config(), overrides)
    t = cfg.train
    device = _device(t.device)
    if device.type == "cpu" and t.threads:
        torch.set_num_threads(t.threads)
    meta = run.meta()
    split = run.encoded()["train"]
    src, tgt = split["src_ids"], split["tgt_ids"]
    torch.manual_seed(t.seed)
    model = build_model(cfg.model, meta["src_vocab_size"], meta["tgt_vocab_size"]).to(device)
    module = LabelSmoothedLoss(model, t.label_smoothing)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr)
    schedule = LRSchedule(t)
    batches = make_batches([len(s) for s in src], [len(s) for s in tgt], t.batch_tokens, shuffle=True, seed=t.seed)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
    model.train()
    tokens = sentences = 0
    for i, idx in enumerate(batches[: warmup + steps]):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        b = collate([src[j] for j in idx], [tgt[j] for j in idx], idx).to(device)
        _train_step(module, optimizer, schedule, b, i + 1, t.clip, autocast)
        if i >= warmup:
            tokens += b.n_tokens
            sentences += len(idx)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        "what": "train", "device": str(device), "threads": torch.get_num_threads(), "precision": t.precision,
        "params": model.num_parameters(), "batch_tokens": t.batch_tokens, "steps": steps,
        "tokens_per_s": round(tokens / seconds, 1), "sentences_per_s": round(sentences / seconds, 1),
        "tokens_per_batch": round(tokens / steps, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    }
    if device.type == "cuda":
        result["peak_cuda_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.bench", description=__doc__)
    p.add_argument("--run", required=True)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    try:
        print(json.dumps(bench_training(RunDir.of(args.run), args.overrides, args.steps, args.warmup)), flush=True)
    except MTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
