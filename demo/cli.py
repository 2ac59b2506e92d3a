"""`mt demo` and `mt serve`, added to the `mt` command through the ``mt.commands`` entry point (see ``mt.cli``)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket

from mt.cli import add_model_choice
from mt.cli_translate import add_model_source, add_runtime, load_translator
from mt.errors import MTError

__all__ = ["register", "register_serve"]

log = logging.getLogger("mt")


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


def cmd_serve(args: argparse.Namespace) -> int:
    from demo.http_api import Limits
    from mt.run import RunDir

    limits = Limits(max_bytes=args.max_bytes, max_texts=args.max_texts, max_chars=args.max_chars,
                    max_queue=args.max_queue, timeout_s=args.timeout)
    if min(args.max_bytes, args.max_texts, args.max_chars, args.max_queue) < 1 or args.timeout <= 0 \
            or args.max_wait_ms < 0:
        raise MTError("--max-bytes, --max-texts, --max-chars, --max-queue and --timeout must be positive")
    listener = _listen(args.host, args.port)  # a busy port fails here, before the model loads
    args.overrides = [*args.overrides, *([f"decode.beam={args.beam}"] if args.beam else []),
                      *([f"decode.alpha={args.alpha}"] if args.alpha is not None else [])]
    translator = load_translator(args)
    run = None if args.model else RunDir.of(args.run)
    import uvicorn

    from demo.http_api import build_api

    app = build_api(translator, run, limits, batching=not args.no_batching, max_wait_s=args.max_wait_ms / 1000)
    if not _is_loopback(args.host):
        log.warning("serving on %s: other machines can reach this API, and it has no authentication", args.host)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"mt serve: http://{host}:{listener.getsockname()[1]} ({translator.facts.get('src')} → "
          f"{translator.facts.get('tgt')}; documentation at /docs); Ctrl-C stops it after the requests in flight",
          flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=args.access_log,
                            timeout_graceful_shutdown=args.timeout)
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise MTError(f"cannot serve on {host}:{port}: {e.strerror or e}; choose another --port or --host") from None
    sock.listen(2048)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def register_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve RUN (or an exported model file) as an HTTP JSON API, LibreTranslate's "
                                     "/translate included")
    add_model_source(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 to serve other machines)")
    p.add_argument("--port", type=int, default=8000, help="port to serve on (0: any free port)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="a decode batch takes requests as they come until none has come for this long "
                        "(default 5; at most 10 times that in all)")
    p.add_argument("--no-batching", action="store_true", help="translate each request alone (for comparison)")
    p.add_argument("--max-bytes", type=int, default=1_000_000, help="largest request body (413 beyond)")
    p.add_argument("--max-texts", type=int, default=128, help="texts per request (413 beyond)")
    p.add_argument("--max-chars", type=int, default=20_000, help="characters per request, all texts (413 beyond)")
    p.add_argument("--max-queue", type=int, default=256, help="requests waiting at most (503 beyond)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds from a request's arrival to its answer (503 beyond); also how long Ctrl-C waits "
                        "for the requests in flight")
    p.add_argument("--access-log", action="store_true", help="log every request")
    add_model_choice(p)
    add_runtime(p)
    p.set_defaults(func=cmd_serve)
