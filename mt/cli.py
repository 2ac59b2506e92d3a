"""The `mt` command line: prepare, train, translate, eval, score, demo, bench.

Every user-caused problem surfaces as ``MTError`` and is printed as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from mt.config import Config, apply_overrides, load_config, save_config
from mt.errors import MTError
from mt.run import RunDir

__all__ = ["main"]

log = logging.getLogger("mt")


def _resolve_config(run: RunDir, config_file: str | None, overrides: list[str]) -> Config:
    if config_file:
        cfg = load_config(config_file)
    elif run.config_path.is_file():
        cfg = run.config()
    else:
        cfg = Config()
    return apply_overrides(cfg, overrides)


def cmd_prepare(args: argparse.Namespace) -> int:
    from data_prep.prepare import prepare

    run = RunDir.of(args.run)
    overrides = [f"data.src={args.src}", f"data.tgt={args.tgt}", *args.overrides]
    if args.vocab_size is not None:
        overrides.append(f"data.vocab_size={args.vocab_size}")
    cfg = _resolve_config(run, args.config, overrides)
    stats = prepare(run, cfg, data_dir=args.data_dir, hf_dataset=args.hf_dataset, hf_config=args.hf_config)
    save_config(cfg, run.config_path)
    f, tok = stats["filtered"], stats["tokenizer"]
    removed = ", ".join(f"{k} {f[k]}" for k in ("empty", "duplicate", "too_long", "length_ratio"))
    print(f"train: kept {f['kept_pairs']} of {f['input_pairs']} pairs (removed: {removed})")
    print(f"vocabulary: {tok['type']}, {'joint' if tok['joint'] else 'separate'}, "
          f"src {tok['src_vocab_size']}, tgt {tok['tgt_vocab_size']}")
    for name, s in stats["splits"].items():
        print(f"{name}: {s['sentences']} sentences, mean tokens src {s['src_tokens_mean']} tgt {s['tgt_tokens_mean']}")
    print(f"prepared {run.data_dir} in {stats['seconds']} s")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mt.trainer import train

    run = RunDir.of(args.run)
    run.require_prepared()
    cfg = _resolve_config(run, args.config, args.overrides)
    save_config(cfg, run.config_path)
    result = train(run, cfg)
    return 0 if result.stopped != "interrupted" else 130


def _add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run directory (holds data, checkpoints, logs, results)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mt", description="Recurrent neural machine translation toolkit.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare", help="load, clean and encode a parallel corpus into RUN/data")
    _add_run(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", help="folder with train.L, val.L (or valid.L, dev.L) and NAME.L test files")
    source.add_argument("--hf-dataset", help="Hugging Face Hub dataset name, e.g. bentrevett/multi30k")
    p.add_argument("--hf-config", help="Hub dataset configuration name")
    p.add_argument("--src", required=True, help="source language code, e.g. en")
    p.add_argument("--tgt", required=True, help="target language code, e.g. de")
    p.add_argument("--vocab-size", type=int, help="SentencePiece vocabulary size (data.vocab_size)")
    p.add_argument("--config", help="YAML config (default: RUN/config.yaml, else the package defaults)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.joint_vocab=false")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train (or resume) the model of RUN")
    _add_run(p)
    p.add_argument("--config", help="YAML config (default: RUN/config.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_minutes=10")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr
    )
    try:
        return args.func(args)
    except MTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
