"""`mt translate` and `mt export`: the command-line side of using a trained model (mt.decode.stream does the work).

    mt translate --run RUN < in.txt > out.txt            # a filter: answers line by line in a pipe
    mt translate --model model.mt --input in.txt --output out.txt --format jsonl --alignment
    mt translate --run RUN --input src.txt --score-reference ref.txt
    mt export --run RUN --output model.mt [--int8]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mt.errors import MTError

__all__ = ["cmd_export", "cmd_translate", "load_translator", "register"]

log = logging.getLogger("mt")


def register(sub, add_model_choice) -> None:
    p = sub.add_parser("translate", help="translate lines (stdin to stdout by default), as a stream")
    add_model_source(p)
    add_model_choice(p)
    p.add_argument("--nbest", type=int, default=1, help="print 'i ||| translation ||| score' lines, N per input")
    p.add_argument("--input", help="input file (default: stdin, read as it comes)")
    p.add_argument("--output", help="output file, replaced only when complete (default: stdout, flushed per chunk)")
    p.add_argument("--format", choices=["text", "jsonl", "html", "markdown"], default="text",
                   help="text (default), or jsonl: one JSON object per line with source, translation, score, n-best; "
                        "html, markdown: text, with --markup of that kind")
    p.add_argument("--glossary", metavar="FILE",
                   help="terms to enforce: 'source<TAB>target' lines, or one term a line to keep untranslated")
    p.add_argument("--markup", choices=["none", "html", "markdown"],
                   help="inline markup of the input: tags kept around the words they mark, never translated "
                        "(decode.markup; default none)")
    p.add_argument("--alignment", action="store_true",
                   help="add hard subword alignments 's-t' from attention ('translation ||| 0-0 1-2 ...' in text)")
    p.add_argument("--score-reference", metavar="FILE",
                   help="instead of translating: print each line of FILE's log-probability as the translation of "
                        "the input line ('sum<TAB>per-token<TAB>tokens')")
    p.add_argument("--sample", action="store_true",
                   help="draw each translation from the model instead of searching (back-translation's synthetic "
                        "sources); the same --seed gives the same output")
    p.add_argument("--temperature", type=float, default=1.0, help="with --sample: < 1 sharper, > 1 flatter (default 1)")
    p.add_argument("--top-k", type=int, default=0, help="with --sample: draw among the k most likely tokens (0: all)")
    p.add_argument("--seed", type=int, default=1, help="with --sample: the random seed (default 1)")
    p.add_argument("--chunk-lines", type=int, default=1000,
                   help="lines translated together (sorted by length into batches); bounds memory")
    add_runtime(p)
    p.set_defaults(func=cmd_translate, quick_exit=True)

    p = sub.add_parser("export", help="write a run's model as one self-contained file (mt translate --model FILE)")
    p.add_argument("--run", "--run-dir", dest="run", required=True, help="run directory")
    p.add_argument("--checkpoint", default="final", help="final (default), best, last, a name or a path")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--output", help="the file to write, e.g. en-de.mt")
    where.add_argument("--hub-dir", help="a folder ready to upload to the Hugging Face Hub: model.mt and README.md, "
                                         "the model card")
    where.add_argument("--push-to-hub", metavar="USER/NAME", help="upload that folder to this Hub repository "
                                                                    "(created when missing; `hf auth login` first)")
    p.add_argument("--int8", action="store_true", help="store the weight matrices as int8 (about a quarter the size)")
    p.add_argument("--license", default="cc-by-4.0", help="the licence the model card states (default cc-by-4.0)")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: a private repository")
    p.set_defaults(func=cmd_export)


def add_model_source(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", "--run-dir", dest="run", help="run directory (its final model, tokenizer and config)")
    which.add_argument("--model", help="a model file written by `mt export`, or hf://USER/NAME[@REVISION] on the "
                                       "Hugging Face Hub")


def add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to decode (default auto)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    p.add_argument("overrides", nargs="*", metavar="decode.key=value",
                   help="decoding overrides, e.g. decode.batch_tokens=8000 decode.max_len_ratio=2")


def load_translator(args: argparse.Namespace):
    """--run or --model, with --checkpoint, --quantize, --ensemble, --device, --threads and decode overrides."""
    from mt.decode.translator import Translator

    if getattr(args, "model", None):
        if args.ensemble or args.checkpoint != "final":
            raise MTError("--model FILE is one model: --ensemble and --checkpoint apply to --run only")
        translator = Translator.from_file(args.model, device=args.device, threads=args.threads, quantize=args.quantize,
                                          backend=args.backend)
    else:
        translator = Translator.from_run(args.run, checkpoint=args.checkpoint, device=args.device,
                                         threads=args.threads, quantize=args.quantize, ensemble=args.ensemble,
                                         backend=args.backend)
    translator.set_decoding(args.overrides)
    log.debug("decoding with the %s backend in %s", translator.facts["backend"], translator.precision)
    return translator


def cmd_translate(args: argparse.Namespace) -> int:
    from mt.decode.stream import read_chunks, translate_stream
    from mt.text import iter_input

    if args.nbest < 1 or args.chunk_lines < 1:
        raise MTError("--nbest and --chunk-lines must be at least 1")
    sampling = _sampling(args)
    if args.format in ("html", "markdown"):
        if args.markup not in (None, args.format):
            raise MTError(f"--format {args.format} is --markup {args.format}: drop --markup {args.markup}")
        args.markup, args.format = args.format, "text"
    if args.markup:
        args.overrides = [*args.overrides, f"decode.markup={args.markup}"]
    translator = load_translator(args)
    if args.glossary:
        from mt.decode.protect import load_glossary

        translator.set_glossary(load_glossary(args.glossary))
    if args.score_reference:
        return _score_reference(translator, args)
    lines = iter_input(args.input)
    bar = _progress(args.input)

    def run(write) -> None:
        translate_stream(translator, read_chunks(lines, args.chunk_lines), write, beam=args.beam, alpha=args.alpha,
                         nbest=args.nbest, fmt=args.format, with_alignment=args.alignment, done=bar.update,
                         sampling=sampling)

    try:
        _write_output(args.output, run)
    finally:
        bar.close()
    return 0


def _sampling(args: argparse.Namespace):
    """--sample with its --temperature, --top-k and --seed, or None; those options without --sample are refused."""
    from mt.decode.sampling import Sampling

    if not args.sample:
        if args.temperature != 1.0 or args.top_k or args.seed != 1:
            raise MTError("--temperature, --top-k and --seed apply to --sample only")
        return None
    if args.beam not in (None, 1) or args.nbest > 1 or args.score_reference:
        raise MTError("--sample draws one translation per line: drop --beam, --nbest and --score-reference")
    return Sampling(args.temperature, args.top_k, args.seed)


def _write_output(output: str | None, run) -> None:
    """stdout: each chunk written and flushed as it is done; a file: written beside it and moved in place when
    complete, so an earlier file survives a crash or Ctrl-C."""
    if output and output != "-":
        from mt.files import atomic_write

        atomic_write(output, lambda f: run(lambda text: (f.write(text.encode("utf-8")), f.flush())),
                     what="output file")
    else:
        def write(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        run(write)


def _progress(path: str | None):
    """A lines/s bar on a terminal's stderr for an input file (with ETA: its lines are counted first); none for
    stdin (a filter) or when stderr is a file or pipe (a script's log)."""
    from tqdm import tqdm

    if not path or path == "-" or not sys.stderr.isatty():
        return tqdm(disable=True)
    total = None
    if not path.endswith(".gz") and Path(path).is_file():
        with open(path, "rb") as f:
            total = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    return tqdm(total=total, unit=" lines", desc="translating", file=sys.stderr, dynamic_ncols=True)


def _score_reference(translator, args: argparse.Namespace) -> int:
    from mt.decode.force import score_references
    from mt.text import read_input, read_text_file

    if args.nbest > 1 or args.alignment or args.format != "text":
        raise MTError("--score-reference prints scores: drop --nbest, --alignment and --format")
    scores = score_references(translator, read_input(args.input), read_text_file(args.score_reference, "reference file"))
    text = "".join(f"{s.log_prob:.4f}\t{s.per_token:.4f}\t{s.tokens}\n" for s in scores)
    _write_output(args.output, lambda write: write(text))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mt.model_file import export_model
    from mt.run import RunDir

    run = RunDir.of(args.run)
    if args.push_to_hub:
        from mt.hub import push_to_hub

        url = push_to_hub(run, args.push_to_hub, args.checkpoint, args.int8, args.license, args.private)
        print(f"uploaded to {url}; use it with `mt translate --model hf://{args.push_to_hub}`")
        return 0
    if args.hub_dir:
        from mt.hub import write_hub_folder

        info = write_hub_folder(run, args.hub_dir, args.checkpoint, args.int8, args.license)
        print(f"wrote {info['path']} ({info['bytes'] / 1e6:.1f} MB) and the model card {info['card']}; upload the "
              f"folder with `hf upload USER/NAME {args.hub_dir}` or `mt export --push-to-hub USER/NAME`")
        return 0
    info = export_model(run, args.output, args.checkpoint, args.int8)
    print(f"wrote {info['path']}: {info['bytes'] / 1e6:.1f} MB, {info['parameters']:,} parameters"
          f"{' (int8 weights)' if info['int8'] else ''}; use it with `mt translate --model {info['path']}`")
    return 0
