"""`make bench` (``python -m bench``): training and decoding speed, one JSON line each, peak and anonymous
resident memory beside every throughput.

- train: two copies of the RUN's configured model alternating batch by batch (``bench.training``): bf16 and fp32
  where the machine has bf16 units, else the configured precision alone; ``--compare backends`` the fast and
  the reference backend instead; ``--profile`` where a step's time goes.
- decode: the RUN's trained model translating a split (``bench.decoding``), greedy and beam, in bf16 and fp32
  where the machine has bf16 units; ``--compare backends`` or ``--compare candidates`` (approximate vs exact)
  alternate arms in ``--rounds`` rounds. Needs a trained RUN (skipped with a note otherwise).
- ``--joey DIR``: Joey NMT's decoding timed beside ours, whole processes (``bench.joey``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.decoding import Arm, bench_decoding
from bench.joey import JoeyFolder, bench_against_joey
from bench.training import bench_training, compare_training
from mt.config import apply_overrides
from mt.device import bf16_units, resolve_device, resolve_precision
from mt.errors import MTError
from mt.run import RunDir

__all__ = ["main"]

COMPARE = ("backends", "precision", "candidates")


def _precisions(run: RunDir, choice: str) -> list[str]:
    """--precision auto -> bf16 and fp32 where this machine has bf16 units, else the configured precision alone
    (emulated bf16 is many times slower), saying so on stderr."""
    if choice == "both":
        return ["bf16", "fp32"]
    if choice == "auto" and bf16_units(resolve_device(run.config().train.device)):
        return ["bf16", "fp32"]
    if choice == "auto":
        print("bench: no bf16 units here, so the configured precision only (bf16 would be emulated); "
              "--precision both times it anyway", file=sys.stderr)
    return []  # the configured one


def _train(run: RunDir, args: argparse.Namespace) -> dict:
    if args.profile:
        return bench_training(run, args.overrides, args.steps, args.warmup, args.backend, profile=True)
    train_cfg = apply_overrides(run.config(), args.overrides).train
    configured = resolve_precision(train_cfg.precision, resolve_device(train_cfg.device))[0]
    precisions = _precisions(run, args.precision) or [configured]
    if args.compare == "backends":
        precision = precisions[0] if len(precisions) == 1 else configured
        arms = [("fast", "fast", precision), ("reference", "reference", precision)]
    elif len(precisions) == 2:
        arms = [(p, args.backend, p) for p in precisions]
    else:
        return bench_training(run, args.overrides, args.steps, args.warmup, args.backend)
    return compare_training(run, args.overrides, args.steps, args.warmup, arms)


def _decode_arms(args: argparse.Namespace) -> list[Arm]:
    if args.compare == "backends":
        return [Arm("fast", "fast"), Arm("reference", "reference")]
    if args.compare == "candidates":
        return [Arm("approximate", args.backend, ("decode.candidates=approximate",)),
                Arm("exact", args.backend, ("decode.candidates=exact",))]
    return [Arm(args.backend or "run's backend", args.backend)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--what", default="train,decode", help="comma-separated: train, decode")
    p.add_argument("--backend", choices=["auto", "reference", "fast"],
                   help="which implementation computes the model (default: the run's model.backend)")
    p.add_argument("--compare", choices=COMPARE,
                   help="backends: fast vs reference (training and decoding); precision: bf16 vs fp32 (training; "
                        "decoding times both with --precision both); candidates: approximate vs exact (decoding)")
    p.add_argument("--steps", type=int, default=120, help="timed training steps (about one Multi30k epoch)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--profile", action="store_true",
                   help="run the timed training steps under torch.profiler and report where the time goes")
    p.add_argument("--split", default="test_2016_flickr", help="split to decode")
    p.add_argument("--beams", default="1,5", help="comma-separated beam sizes for decoding")
    p.add_argument("--rounds", type=int, default=1, help="timed decodes of each arm, alternating (median reported)")
    p.add_argument("--precision", choices=["auto", "both", "config"], default="auto",
                   help="both: bf16 and fp32 side by side; config: the configured precision only; auto (the "
                        "default): both where this machine has bf16 units, else config")
    p.add_argument("--joey", metavar="DIR", help="also time Joey NMT from DIR (made by ../shared/reference/"
                   "run_joeynmt.sh DIR SECONDS) against `mt translate`, whole process, on Joey's test split")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for the training bench")
    args = p.parse_args(argv)
    run = RunDir.of(args.run)
    what = set(args.what.split(","))
    try:
        joey = JoeyFolder(Path(args.joey)) if args.joey and "decode" in what else None  # checked first
        if args.compare == "candidates" and "train" in what:
            raise MTError("--compare candidates compares decoding only: add --what decode")
        if "train" in what:
            print(json.dumps(_train(run, args)), flush=True)
        if "decode" in what and args.compare != "precision":
            if not (run.checkpoint_dir / "best.pt").is_file():
                print(json.dumps({"what": "decode", "skipped": f"no trained model in {run.root} (make train)"}))
            else:
                beams = [int(b) for b in args.beams.split(",")]
                for result in bench_decoding(run, args.split, beams, _precisions(run, args.precision) or [None],
                                             _decode_arms(args), args.rounds):
                    print(json.dumps(result), flush=True)
        if joey:
            for record in bench_against_joey(run.root, joey, [int(b) for b in args.beams.split(",")],
                                             run.root / "eval" / "bench-joey"):
                print(json.dumps(record), flush=True)
    except MTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
