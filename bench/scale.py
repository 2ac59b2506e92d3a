"""`make scale-bench`: `mt prepare` and `mt train` on synthetic corpora of N unique pairs, one JSON line per N.

Each synthetic pair joins two random training pairs of a real corpus (source with source, target with target),
so no pair is duplicated and sentences are about twice as long as the corpus's. For each N: preparation
seconds, pairs/s and peak RSS; then a short `mt train`: seconds from its start to the first update, peak RSS,
target tokens/s. Each phase runs in its own process, so each peak is that phase's own.

    python -m bench.scale --pairs 30000 300000 1000000 --train-minutes 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.memory import status_kib
from data_prep.sources import load_local

__all__ = ["main", "synthetic_corpus"]

# Runs one `mt` command in this child and prints its peak RSS (itself and its own children) as the last line.
_MEASURED = """
import json, resource, sys
from mt.cli import main
code = main(sys.argv[1:])
peak = max(resource.getrusage(r).ru_maxrss for r in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(json.dumps({"rc": code, "peak_rss_kib": peak}), flush=True)
"""


def synthetic_corpus(data_dir: Path, out: Path, src: str, tgt: str, pairs: int, seed: int = 1) -> None:
    """out/{train,val}.{src,tgt}: `pairs` unique joined training pairs, and the real validation split."""
    if (out / f"train.{tgt}").is_file():
        return
    out.mkdir(parents=True, exist_ok=True)
    splits, _ = load_local(data_dir, src, tgt)
    train = dict(zip((src, tgt), splits["train"].read_all()))
    m = len(train[src])
    if pairs > m * (m - 1):
        raise SystemExit(f"error: {data_dir} has {m} pairs: at most {m * (m - 1)} joined pairs")
    rng = np.random.default_rng(seed)
    codes = np.unique(rng.integers(0, m * m, int(pairs * 1.05) + 100))  # (i, j) coded as i * m + j
    codes = codes[codes // m != codes % m]  # not a pair with itself
    while len(codes) < pairs:
        codes = np.unique(np.concatenate([codes, rng.integers(0, m * m, pairs)]))
        codes = codes[codes // m != codes % m]
    codes = rng.permutation(codes)[:pairs]
    first, second = (codes // m).tolist(), (codes % m).tolist()
    val = dict(zip((src, tgt), splits["val"].read_all()))
    for lang in (src, tgt):
        lines = train[lang]
        with open(out / f"train.{lang}.tmp", "w", encoding="utf-8") as f:
            for a, b in zip(first, second):
                f.write(f"{lines[a]} {lines[b]}\n")
        (out / f"train.{lang}.tmp").rename(out / f"train.{lang}")
        (out / f"val.{lang}").write_text("".join(x + "\n" for x in val[lang]), encoding="utf-8")


def _run_measured(args: list[str], log: Path, first_update_of: Path | None = None) -> dict:
    """Run `mt ARGS` in a child; its seconds, peak RSS, peak anonymous RSS (sampled every 0.2 s; peak RSS also
    counts the pages of the memory-mapped corpus that training has read, which are page cache: shared and
    reclaimable) and (for training) seconds until the log's first update."""
    started = time.perf_counter()
    first_update, peak_anonymous = None, 0
    with open(log, "w") as out:
        child = subprocess.Popen([sys.executable, "-c", _MEASURED, *args], stdout=out, stderr=subprocess.STDOUT)
        while child.poll() is None:
            peak_anonymous = max(peak_anonymous, status_kib(child.pid, "RssAnon"))
            if first_update is None and first_update_of is not None and first_update_of.is_file():
                if '"kind": "train"' in first_update_of.read_text(encoding="utf-8"):
                    first_update = time.perf_counter() - started
            time.sleep(0.2)
    seconds = time.perf_counter() - started
    last = log.read_text(encoding="utf-8").strip().splitlines()[-1]
    try:
        result = json.loads(last)
    except json.JSONDecodeError:
        raise SystemExit(f"error: `mt {' '.join(args)}` failed; see {log}") from None
    if result["rc"] != 0:
        raise SystemExit(f"error: `mt {' '.join(args)}` exited with {result['rc']}; see {log}")
    return {"seconds": round(seconds, 1), "peak_rss_gib": round(result["peak_rss_kib"] / 2**20, 2),
            "peak_anonymous_gib": round(peak_anonymous / 2**20, 2),
            "first_update_s": None if first_update is None else round(first_update, 1)}


def bench_size(args: argparse.Namespace, pairs: int) -> dict:
    root = Path(args.out) / f"{pairs}"
    synthetic_corpus(Path(args.data_dir), root / "corpus", args.src, args.tgt, pairs)
    run = root / "run"
    overrides = args.overrides
    shutil.rmtree(run / "data", ignore_errors=True)  # a fresh preparation every time, never the cache
    prep = _run_measured(["prepare", "--run", str(run), "--data-dir", str(root / "corpus"), "--src", args.src,
                          "--tgt", args.tgt, "--config", args.config, *overrides], root / "prepare.log")
    for stale in ("checkpoints", "plots"):  # a fresh short training every time
        shutil.rmtree(run / stale, ignore_errors=True)
    (run / "train_log.jsonl").unlink(missing_ok=True)
    short = [f"train.max_minutes={args.train_minutes}", "train.log_every=10", "train.val_max_sentences=100",
             "train.keep_checkpoints=0"]
    train = _run_measured(["train", "--run", str(run), "--config", args.config, *short, *overrides],
                          root / "train.log", first_update_of=run / "train_log.jsonl")
    records = [json.loads(x) for x in (run / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    rate = [r["tokens_per_s"] for r in records if r.get("kind") == "train"]
    stats = json.loads((run / "data" / "stats.json").read_text(encoding="utf-8"))
    return {"pairs": pairs, "prepare_s": prep["seconds"], "prepare_pairs_per_s": round(pairs / prep["seconds"]),
            "prepare_peak_rss_gib": prep["peak_rss_gib"], "prepare_peak_anonymous_gib": prep["peak_anonymous_gib"],
            "train_first_update_s": train["first_update_s"], "train_peak_rss_gib": train["peak_rss_gib"],
            "train_peak_anonymous_gib": train["peak_anonymous_gib"], "train_tokens_per_s": round(rate[-1]) if rate else None,
            "train_steps": max((r["step"] for r in records), default=0), "kept_pairs": stats["filtered"]["kept_pairs"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="../shared/data/multi30k", help="the real corpus the pairs are joined from")
    p.add_argument("--src", default="en")
    p.add_argument("--tgt", default="de")
    p.add_argument("--pairs", type=int, nargs="+", default=[30_000, 300_000], help="corpus sizes")
    p.add_argument("--config", default="configs/multi30k_en_de.yaml")
    p.add_argument("--train-minutes", type=float, default=2.0, help="the short training's budget")
    p.add_argument("--out", default="runs/scale-bench", help="corpora, runs and logs")
    p.add_argument("overrides", nargs="*", help="config overrides for prepare and train (key=value)")
    args = p.parse_args(argv)
    for pairs in args.pairs:
        print(json.dumps(bench_size(args, pairs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
