"""The `mt` command line: prepare, train, translate, eval, score, demo, bench.

Every user-caused problem surfaces as ``MTError`` and is printed as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
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


def cmd_pretrain(args: argparse.Namespace) -> int:
    from mt.pretrain import pretrain

    # `--text a.txt b.txt train.lr=1e-3`: argparse hands the trailing overrides to --text; give them back
    texts = [x for x in args.text if "=" not in x or Path(x).is_file()]
    args.overrides = [x for x in args.text if x not in texts] + args.overrides
    lm_run, from_run = RunDir.of(args.run), RunDir.of(args.from_run)
    from_run.require_prepared()
    # a resumed LM keeps its own config; a new one starts from the translator's, so the sizes match it
    base = lm_run if lm_run.config_path.is_file() else from_run
    cfg = _resolve_config(base, args.config, args.overrides)
    lm_run.root.mkdir(parents=True, exist_ok=True)
    save_config(cfg, lm_run.config_path)
    result = pretrain(lm_run, from_run, args.side, cfg, texts)
    return 0 if result.stopped != "interrupted" else 130


def cmd_generate(args: argparse.Namespace) -> int:
    import sentencepiece as spm
    import torch

    from mt.pretrain import load_language_model

    run = RunDir.of(args.run)
    path = run.checkpoint_dir / f"{args.checkpoint}.pt"
    if not path.is_file():
        raise MTError(f"no language model in {run.root}: {path} not found (run `mt pretrain --run {run.root} ...`)")
    if args.temperature < 0 or args.top_k < 0 or args.max_len < 1 or args.num < 1:
        raise MTError("--temperature and --top-k must be >= 0, --max-len and --num >= 1")
    lm, meta = load_language_model(path)
    sp = spm.SentencePieceProcessor(model_file=str(run.root / meta["tokenizer"]))
    generator = torch.Generator().manual_seed(args.seed)
    prompt = sp.encode(args.prompt) if args.prompt else []
    for _ in range(args.num):
        new = lm.generate(prompt, args.max_len, args.temperature, args.top_k, generator)
        print(sp.decode(prompt + new))
    return 0


def _read_input(path: str | None) -> list[str]:
    """Lines of a file or stdin, strictly UTF-8 (a bad line is named)."""
    from data_prep.sources import decode_lines, read_lines

    if path and path != "-":
        if not Path(path).is_file():
            raise MTError(f"input file not found: {path}")
        return read_lines(Path(path))[0]
    return decode_lines(sys.stdin.buffer.read(), "standard input")


def _write_output(path: str | None, text: str) -> None:
    if path and path != "-":
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as e:
            raise MTError(f"cannot write {path}: {e.strerror or e}") from None
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def cmd_translate(args: argparse.Namespace) -> int:
    from mt.translator import Translator

    translator = Translator.from_run(args.run, checkpoint=args.checkpoint, quantize=args.quantize,
                                     ensemble=args.ensemble)
    lines = _read_input(args.input)
    results = translator.translate(lines, beam=args.beam, nbest=args.nbest, alpha=args.alpha)
    if args.nbest > 1:
        # n-best format: for each input line, its best N (or fewer) "score ||| translation" lines, best first,
        # then one empty line; an empty input line gets the single line "0.0000 ||| "
        out = "".join("".join(f"{sc:.4f} ||| {text}\n" for sc, text in r.nbest) + "\n" for r in results)
    else:
        out = "".join(r.text + "\n" for r in results)
    _write_output(args.output, out)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from eval.evaluate import evaluate, read_text_file, split_texts
    from mt.translator import Translator

    run = RunDir.of(args.run)
    translator = Translator.from_run(run, checkpoint=args.checkpoint, quantize=args.quantize, ensemble=args.ensemble)
    # results of other checkpoints or ensembles get their own file names, never overwriting the run's own
    tag = args.tag or "-".join(part for part in (args.checkpoint if args.checkpoint != "best" else "",
                                                 f"ensemble{len(args.ensemble) + 1}" if args.ensemble else "",
                                                 "int8" if args.quantize else "") if part)
    if args.src or args.ref:
        if not (args.src and args.ref):
            raise MTError("give both --src FILE and --ref FILE")
        jobs = [(Path(args.src).name.split(".")[0], read_text_file(args.src), read_text_file(args.ref))]
    else:
        names = [args.split] if args.split else [n for n in run.meta()["splits"] if n not in ("train", "val")]
        if not names:
            raise MTError(f"{run.root} has no test split; use --split val or --src/--ref")
        jobs = [(name, *split_texts(run, name)) for name in names]
    for name, sources, references in jobs:
        name = f"{name}.{re.sub(r'[^A-Za-z0-9_-]+', '-', tag)}" if tag else name
        report = evaluate(translator, run, name, sources, references, beam=args.beam, alpha=args.alpha)
        print(f"{name}: BLEU {report['bleu']:.2f}  chrF {report['chrf']:.2f}  lowercased BLEU "
              f"{report['bleu_lowercase']:.2f}  (beam {report['beam']}, alpha {report['alpha']}, {report['sentences']} sentences, "
              f"{report['sentences_per_s']} sentences/s)")
        for metric, signature in report["signature"].items():
            print(f"  {metric}: {signature}")
        print(f"  wrote {run.eval_dir / name}.hyp and .json")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from eval.evaluate import read_text_file
    from eval.scoring import score

    hyps, refs = read_text_file(args.hyp), read_text_file(args.ref)
    if len(hyps) != len(refs):
        raise MTError(f"{args.hyp} has {len(hyps)} lines but {args.ref} has {len(refs)}")
    report = score(hyps, refs)
    print(json.dumps(report, indent=2) if args.json else
          f"BLEU {report['bleu']:.2f}  chrF {report['chrf']:.2f}  lowercased BLEU {report['bleu_lowercase']:.2f}\n"
          + "\n".join(f"  {m}: {sig}" for m, sig in report["signature"].items()))
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from mt.checkpoint import average_checkpoints, load_checkpoint, save_checkpoint

    run = RunDir.of(args.run)
    if args.last < 1:
        raise MTError(f"--last must be at least 1, got {args.last}")
    paths = sorted(run.checkpoint_dir.glob("epoch-*.pt"))[-args.last:]
    if len(paths) < args.last:
        raise MTError(f"{run.checkpoint_dir} has {len(paths)} epoch checkpoint(s), fewer than --last {args.last} "
                      "(train with train.keep_checkpoints=N to keep them)")
    state = {k: v for k, v in load_checkpoint(paths[-1]).items() if k != "format"}
    state["model"] = average_checkpoints(paths)
    state["averaged"] = [p.name for p in paths]
    out = run.checkpoint_dir / f"{args.output}.pt"
    save_checkpoint(state, out)
    print(f"averaged {', '.join(p.name for p in paths)} into {out}; use it with --checkpoint {args.output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mt.translator import Translator

    if args.max_chars < 1 or args.concurrency < 1:
        raise MTError("--max-chars and --concurrency must be at least 1")
    run = RunDir.of(args.run)
    translator = Translator.from_run(run, checkpoint=args.checkpoint)  # a missing model fails before gradio loads
    from demo.app import serve

    try:
        serve(translator, run, args.host, args.port, args.max_chars, args.concurrency)
    except OSError as e:  # e.g. "Cannot find empty port in range: 7860-7860"
        raise MTError(f"cannot serve on {args.host}:{args.port}: {e}; choose another --port") from None
    return 0


def _add_run(p: argparse.ArgumentParser) -> None:
    # --run-dir is the same option under a name torchrun's own argument parser does not mistake for --run-path
    p.add_argument("--run", "--run-dir", dest="run", required=True,
                   help="run directory (holds data, checkpoints, logs, results)")


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

    p = sub.add_parser("pretrain", help="pre-train a language model for one side of a prepared RUN")
    _add_run(p)
    p.add_argument("--from-run", required=True, help="the prepared translation RUN whose tokenizer and sizes to use")
    p.add_argument("--side", required=True, choices=["src", "tgt"], help="src: for the encoder; tgt: for the decoder")
    p.add_argument("--text", nargs="+", default=[], metavar="FILE",
                   help="extra monolingual text, one sentence per line (plain or .gz)")
    p.add_argument("--config", help="YAML config (default: LM_RUN's own, else the translator RUN's)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_minutes=10")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("generate", help="generate text with a language model from `mt pretrain`")
    _add_run(p)
    p.add_argument("--prompt", default="", help="text to continue (default: start a new sentence)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 = most likely token")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0 = all)")
    p.add_argument("--max-len", type=int, default=50, help="at most this many new subword tokens")
    p.add_argument("--num", type=int, default=1, help="how many samples (one per line)")
    p.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same text")
    p.add_argument("--checkpoint", default="best", help="best or last")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("average", help="average the weights of the last N epoch checkpoints")
    _add_run(p)
    p.add_argument("--last", type=int, required=True, help="how many of the newest epoch-NNN.pt to average")
    p.add_argument("--output", default="averaged", help="name of the result in RUN/checkpoints (NAME.pt)")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser("translate", help="translate lines (stdin to stdout by default)")
    _add_run(p)
    p.add_argument("--beam", type=int, help="beam size (default: decode.beam of the run; 1 = greedy)")
    p.add_argument("--nbest", type=int, default=1, help="print N 'score ||| translation' lines per input")
    p.add_argument("--alpha", type=float, help="length penalty exponent (default: decode.alpha of the run)")
    p.add_argument("--input", help="input file (default: stdin)")
    p.add_argument("--output", help="output file (default: stdout)")
    p.add_argument("--checkpoint", default="best", help="best, last, another name in RUN/checkpoints (e.g. averaged), or a path")
    p.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantisation for faster CPU decoding")
    p.add_argument("--ensemble", nargs="+", default=[], metavar="RUN2",
                   help="decode together with these runs (their best checkpoint) or checkpoint files of the same data")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("eval", help="translate a test split and score it with sacreBLEU")
    _add_run(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--split", help="split name in RUN/data (default: every test split)")
    which.add_argument("--src", help="source file (with --ref)")
    p.add_argument("--ref", help="reference file (with --src)")
    p.add_argument("--beam", type=int, help="beam size (default: decode.beam of the run)")
    p.add_argument("--alpha", type=float, help="length penalty exponent (default: decode.alpha of the run)")
    p.add_argument("--checkpoint", default="best", help="best, last, another name in RUN/checkpoints (e.g. averaged), or a path")
    p.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantisation for faster CPU decoding")
    p.add_argument("--ensemble", nargs="+", default=[], metavar="RUN2",
                   help="decode together with these runs (their best checkpoint) or checkpoint files of the same data")
    p.add_argument("--tag", help="results go to RUN/eval/NAME.TAG.{hyp,json} (default: a tag naming a non-default "
                                 "checkpoint, ensemble or quantisation; none for the run's own best model)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="serve the Gradio web app for RUN")
    _add_run(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 to serve other machines)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on")
    p.add_argument("--max-chars", type=int, default=5000, help="longest input accepted per request")
    p.add_argument("--concurrency", type=int, default=2, help="translations computed at the same time")
    p.add_argument("--checkpoint", default="best", help="best, last, another name in RUN/checkpoints, or a path")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("score", help="score existing translations with sacreBLEU (BLEU, chrF)")
    p.add_argument("--hyp", required=True, help="hypothesis file, one sentence per line")
    p.add_argument("--ref", required=True, help="reference file, one sentence per line")
    p.add_argument("--json", action="store_true", help="print the scores and signatures as JSON")
    p.set_defaults(func=cmd_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
    raise SystemExit(main())
