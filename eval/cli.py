"""`mt eval` and `mt score`, added to the `mt` command through ``mt.commands`` entry points (see ``mt.cli``)."""

from __future__ import annotations

import argparse
import json

from mt.cli import add_model_choice
from mt.cli_translate import add_runtime, load_translator
from mt.files import atomic_write
from mt.run import RunDir

__all__ = ["register_eval", "register_score"]


def cmd_eval(args: argparse.Namespace) -> int:
    """One run: translate and score each split. Several (``--run A --run B``): each run translates and is scored
    as alone, then the systems are compared per split against the first (paired tests), the comparison written to
    the first run's RUN/eval/NAME.compare.json."""
    from eval.evaluate import evaluate, evaluation_jobs, result_name
    from eval.scoring import compare, comparison_table

    runs = [RunDir.of(r) for r in args.run]
    jobs = evaluation_jobs(runs[0], args.split, args.src, args.ref)  # read and checked before the model loads
    for other in runs[1:]:
        evaluation_jobs(other, args.split, args.src, args.ref)  # the same splits exist there too
    hypotheses: dict[str, list[tuple[str, list[str]]]] = {}
    for run in runs:
        args.run = str(run.root)
        translator = load_translator(args)  # with --device, --threads and decode.key=value overrides
        for name, sources, references in jobs:
            name = result_name(name, args.checkpoint, len(args.ensemble), args.quantize, args.tag, args.overrides)
            report = evaluate(translator, run, name, sources, references, beam=args.beam, alpha=args.alpha,
                              tokenize=args.tokenize)
            hypotheses.setdefault(name, []).append((str(run.root), report["hypotheses"]))
            print(f"{run.root if len(runs) > 1 else name}{f' {name}' if len(runs) > 1 else ''}: "
                  f"BLEU {report['bleu']:.2f}  chrF {report['chrf']:.2f}  chrF++ {report['chrf++']:.2f}  "
                  f"TER {report['ter']:.2f}  lowercased BLEU {report['bleu_lowercase']:.2f}  (beam {report['beam']}, "
                  f"alpha {report['alpha']}, {report['precision']}, {report['backend']} backend, "
                  f"{report['sentences']} sentences, {report['sentences_per_s']} sentences/s)")
            if len(runs) == 1:
                for metric, signature in report["signature"].items():
                    print(f"  {metric}: {signature}")
            print(f"  wrote {run.eval_dir / name}.hyp and .json")
    if len(runs) > 1:
        for (_, _, references), (result_key, systems) in zip(jobs, hypotheses.items()):
            result = compare(systems, references, runs[0].meta()["tgt"], args.tokenize, args.paired, args.samples)
            print(f"\n{result_key}:\n{comparison_table(result)}")
            atomic_write(runs[0].eval_dir / f"{result_key}.compare.json", json.dumps(result, indent=2))
            print(f"  wrote {runs[0].eval_dir / result_key}.compare.json")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score translations: one hypothesis file, or several compared against the first."""
    from eval.evaluate import check_pair
    from eval.scoring import compare, comparison_table
    from mt.text import read_text_file

    refs = read_text_file(args.ref)
    systems = []
    for path in args.hyp:
        hyps = read_text_file(path)
        check_pair(path, hyps, args.ref, refs)
        systems.append((path, hyps))
    result = compare(systems, refs, args.lang, args.tokenize, args.paired, args.samples)
    print(json.dumps(result, indent=2) if args.json else comparison_table(result))
    return 0


def _add_comparison(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenize", help="BLEU's tokenizer (default: zh, ja-mecab or ko-mecab for those target "
                                      "languages, 13a otherwise)")
    p.add_argument("--paired", choices=["bs", "ar"], default="bs",
                   help="with several systems: paired bootstrap resampling (bs, default) or approximate "
                        "randomization (ar) against the first")
    p.add_argument("--samples", type=int, help="resamples (bs, default 1000) or trials (ar, default 10000)")


def register_eval(sub) -> None:
    p = sub.add_parser("eval", help="translate a test split and score it with sacreBLEU; several --run: compare them")
    p.add_argument("--run", "--run-dir", dest="run", action="append", required=True,
                   help="run directory; repeat it to compare systems against the first (paired tests)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--split", help="split name in RUN/data (default: every test split)")
    which.add_argument("--src", help="source file (with --ref)")
    p.add_argument("--ref", help="reference file (with --src)")
    add_model_choice(p)
    add_runtime(p)
    p.add_argument("--tag", help="results go to RUN/eval/NAME.TAG.{hyp,json} (default: a tag naming a non-default "
                                 "checkpoint, ensemble or quantisation; none for the model training chose, final.pt)")
    _add_comparison(p)
    p.set_defaults(func=cmd_eval)


def register_score(sub) -> None:
    p = sub.add_parser("score", help="score translations with sacreBLEU (BLEU, chrF, chrF++, TER); several --hyp "
                                     "files: compare them against the first (paired tests)")
    p.add_argument("--hyp", required=True, nargs="+", help="hypothesis file(s), one sentence per line")
    p.add_argument("--ref", required=True, help="reference file, one sentence per line")
    p.add_argument("--lang", default="", help="the target language (chooses BLEU's tokenizer: zh, ja, ko)")
    _add_comparison(p)
    p.add_argument("--json", action="store_true", help="print the scores and signatures as JSON")
    p.set_defaults(func=cmd_score)
