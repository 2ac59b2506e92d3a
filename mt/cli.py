"""The `mt` command line (also `python -m mt`): parses arguments and calls library functions, nothing more.

The library's own commands are here: train, pretrain, generate, average, translate. The packages built on top of
the library add theirs through the ``mt.commands`` entry points of ``pyproject.toml`` (``data_prep``: prepare;
``eval``: eval, score; ``demo``: demo), each a function that adds its sub-parser, so ``mt`` never imports them.

Every user-caused problem surfaces as ``MTError`` and is printed as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

from mt.config import Config, apply_overrides, load_config, save_config
from mt.errors import MTError
from mt.run import RunDir

__all__ = ["add_config", "add_model_choice", "add_run", "main", "resolve_config", "run"]

log = logging.getLogger("mt")


# ---------------------------------------------------------------- options shared by several commands

def add_run(p: argparse.ArgumentParser) -> None:
    # --run-dir is the same option under a name torchrun's own argument parser does not mistake for --run-path
    p.add_argument("--run", "--run-dir", dest="run", required=True,
                   help="run directory (holds data, checkpoints, logs, results)")


def add_config(p: argparse.ArgumentParser, default: str = "RUN/config.yaml") -> None:
    p.add_argument("--config", help=f"YAML config (default: {default})")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_minutes=10")


def add_model_choice(p: argparse.ArgumentParser, decoding: bool = True) -> None:
    """Which model translates (translate, eval, demo) and, with ``decoding``, how it searches (translate, eval)."""
    p.add_argument("--checkpoint", default="final",
                   help="final (what training chose: best.pt or the average of the last kept checkpoints, the "
                        "better on validation; best.pt before training has chosen), best, last, another name in "
                        "RUN/checkpoints (e.g. averaged), or a path")
    p.add_argument("--backend", choices=["auto", "reference", "fast"],
                   help="which implementation computes the model (default: the run's model.backend; mt.backends)")
    if not decoding:
        return
    p.add_argument("--beam", type=int, help="beam size (default: decode.beam of the run; 1 = greedy)")
    p.add_argument("--alpha", type=float, help="length penalty exponent (default: decode.alpha of the run)")
    p.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantisation for faster CPU decoding")
    p.add_argument("--ensemble", nargs="+", default=[], metavar="RUN2",
                   help="decode together with these runs (their final model) or checkpoint files of the same data")


def resolve_config(run: RunDir, config_file: str | None, overrides: list[str]) -> Config:
    """``--config FILE`` if given, else RUN's own config, else the package defaults; then the overrides."""
    if config_file:
        cfg = load_config(config_file)
    elif run.config_path.is_file():
        cfg = run.config()
    else:
        cfg = Config()
    return apply_overrides(cfg, overrides)


def _exit_code(stopped: str) -> int:
    return 130 if stopped == "interrupted" else 0


# ---------------------------------------------------------------- the library's commands

def cmd_train(args: argparse.Namespace) -> int:
    from mt.tasks.translation import train

    run = RunDir.of(args.run)
    run.require_prepared()
    cfg = resolve_config(run, args.config, args.overrides + ([f"model.init_from={args.init_from}"] if args.init_from else []))
    run.require_data_matches(cfg)  # before RUN/config.yaml records settings the data does not have
    with run.writing("train"):
        save_config(cfg, run.config_path)
        return _exit_code(train(run, cfg).stopped)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from mt.tasks.language_model import pretrain

    # `--text a.txt b.txt train.lr=1e-3`: argparse hands the trailing overrides to --text; give them back
    texts = [x for x in args.text if "=" not in x or Path(x).is_file()]
    overrides = [x for x in args.text if x not in texts] + args.overrides
    lm_run, from_run = RunDir.of(args.run), RunDir.of(args.from_run)
    from_run.require_prepared()
    # a resumed LM keeps its own config; a new one starts from the translator's, so the sizes match it
    cfg = resolve_config(lm_run if lm_run.config_path.is_file() else from_run, args.config, overrides)
    with lm_run.writing("pretrain"):
        save_config(cfg, lm_run.config_path)
        return _exit_code(pretrain(lm_run, from_run, args.side, cfg, texts).stopped)


def cmd_generate(args: argparse.Namespace) -> int:
    from mt.tasks.language_model import generate_text

    for text in generate_text(RunDir.of(args.run), args.prompt, args.num, args.temperature, args.top_k, args.max_len,
                              args.seed, args.checkpoint):
        print(text)
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from mt.checkpoint import average_last

    run = RunDir.of(args.run)
    run.require_prepared()
    with run.writing("average"):
        paths, out = average_last(run.checkpoint_dir, args.last, args.output)
    print(f"averaged {', '.join(p.name for p in paths)} into {out}; use it with --checkpoint {args.output}")
    return 0


def _library_commands(sub) -> None:
    p = sub.add_parser("train", help="train (or resume) the model of RUN")
    add_run(p)
    add_config(p)
    p.add_argument("--init-from", metavar="RUN_OR_CHECKPOINT",
                   help="start from this translator's weights (a run: its final model) with a fresh optimizer, "
                        "schedule and progress (model.init_from); the run must share its tokenizer (mt prepare "
                        "--tokenizer-from). Resuming RUN later ignores it")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("pretrain", help="pre-train a language model for one side of a prepared RUN")
    add_run(p)
    p.add_argument("--from-run", required=True, help="the prepared translation RUN whose tokenizer and sizes to use")
    p.add_argument("--side", required=True, choices=["src", "tgt"], help="src: for the encoder; tgt: for the decoder")
    p.add_argument("--text", nargs="+", default=[], metavar="FILE",
                   help="extra monolingual text, one sentence per line (plain or .gz)")
    add_config(p, default="LM_RUN's own, else the translator RUN's")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("generate", help="generate text with a language model from `mt pretrain`")
    add_run(p)
    p.add_argument("--prompt", default="", help="text to continue (default: start a new sentence)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 = most likely token")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0 = all)")
    p.add_argument("--max-len", type=int, default=50, help="at most this many new subword tokens")
    p.add_argument("--num", type=int, default=1, help="how many samples (one per line)")
    p.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same text")
    p.add_argument("--checkpoint", default="best", help="best or last")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("average", help="average the weights of the last N kept checkpoints (one per validation)")
    add_run(p)
    p.add_argument("--last", type=int, required=True, help="how many of the newest step-NNNNNNNN.pt to average")
    p.add_argument("--output", default="averaged", help="name of the result in RUN/checkpoints (NAME.pt)")
    p.set_defaults(func=cmd_average)

    from mt.cli_translate import register

    register(sub, add_model_choice)  # translate, export


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mt", description="Recurrent neural machine translation toolkit.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _library_commands(sub)
    for plugin in sorted(entry_points(group="mt.commands"), key=lambda ep: ep.name):
        plugin.load()(sub)  # e.g. data_prep.cli:register adds `mt prepare`
    return parser


def main(argv: list[str] | None = None) -> int:
    return _dispatch(build_parser().parse_args(argv))


def run() -> None:
    """The `mt` console script and `python -m mt`: ``main``, then the process ends. A command that leaves nothing
    behind it (``quick_exit``: translate) ends without Python's shutdown, which with torch loaded is a noticeable
    share of a short `mt translate` call (docs/results.md, "Speed"); its output is complete and flushed by then."""
    args = build_parser().parse_args()
    code = _dispatch(args)
    if getattr(args, "quick_exit", False):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a reader that went away, a closed stream: nothing left to save
                pass
        logging.shutdown()
        os._exit(code)
    raise SystemExit(code)


def _dispatch(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("httpx", "httpcore", "urllib3"):  # one line per HTTP request otherwise (demo, Hub)
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except MTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    run()
