"""`mt demo`, added to the `mt` command through the ``mt.commands`` entry point (see ``mt.cli``)."""

from __future__ import annotations

import argparse

from mt.cli import add_model_choice
from mt.cli_translate import add_model_source
from mt.errors import MTError

__all__ = ["register"]


def cmd_demo(args: argparse.Namespace) -> int:
    from mt.decode.translator import Translator
    from mt.run import RunDir

    if args.max_chars < 1 or args.concurrency < 1:
        raise MTError("--max-chars and --concurrency must be at least 1")
    if args.model:  # a file from `mt export`; a missing or damaged model fails before gradio loads
        run, translator = None, Translator.from_file(args.model, backend=args.backend)
    else:
        run = RunDir.of(args.run)
        translator = Translator.from_run(run, checkpoint=args.checkpoint, backend=args.backend)
    from demo.app import serve

    try:
        serve(translator, run, args.host, args.port, args.max_chars, args.concurrency)
    except OSError as e:  # e.g. "Cannot find empty port in range: 7860-7860"
        raise MTError(f"cannot serve on {args.host}:{args.port}: {e}; choose another --port") from None
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="serve the Gradio web app for RUN (or an exported model file)")
    add_model_source(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 to serve other machines)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on")
    p.add_argument("--max-chars", type=int, default=5000, help="longest input accepted per request")
    p.add_argument("--concurrency", type=int, default=2, help="translations computed at the same time")
    add_model_choice(p, decoding=False)
    p.set_defaults(func=cmd_demo)
