"""`mt eval` and `mt score`, added to the `mt` command through ``mt.commands`` entry points (see ``mt.cli``)."""

from __future__ import annotations

import argparse
import json

from mt.cli import add_model_choice, add_run
from mt.cli_translate import add_runtime, load_translator
from mt.run import RunDir

__all__ = ["register_eval", "register_score"]


def cmd_eval(args: argparse.Namespace) -> int:
    from eval.evaluate import evaluate, evaluation_jobs, result_name

    run = RunDir.of(args.run)
    jobs = evaluation_jobs(run, args.split, args.src, args.ref)  # read and checked before the model loads
    translator = load_translator(args)  # with --device, --threads and decode.key=value overrides
    for name, sources, references in jobs:
        name = result_name(name, args.checkpoint, len(args.ensemble), args.quantize, args.tag, args.overrides)
        report = evaluate(translator, run, name, sources, references, beam=args.beam, alpha=args.alpha)
        print(f"{name}: BLEU {report['bleu']:.2f}  chrF {report['chrf']:.2f}  lowercased BLEU "
              f"{report['bleu_lowercase']:.2f}  (beam {report['beam']}, alpha {report['alpha']}, {report['precision']}, "
              f"{report['backend']} backend, "
              f"{report['sentences']} sentences, {report['sentences_per_s']} sentences/s)")
        for metric, signature in report["signature"].items():
            print(f"  {metric}: {signature}")
        print(f"  wrote {run.eval_dir / name}.hyp and .json")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from eval.evaluate import check_pair
    from eval.scoring import score
    from mt.text import read_text_file

    hyps, refs = read_text_file(args.hyp), read_text_file(args.ref)
    check_pair(args.hyp, hyps, args.ref, refs)
    report = score(hyps, refs)
    print(json.dumps(report, indent=2) if args.json else
          f"BLEU {report['bleu']:.2f}  chrF {report['chrf']:.2f}  lowercased BLEU {report['bleu_lowercase']:.2f}\n"
          + "\n".join(f"  {m}: {sig}" for m, sig in report["signature"].items()))
    return 0


def register_eval(sub) -> None:
    p = sub.add_parser("eval", help="translate a test split and score it with sacreBLEU")
    add_run(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--split", help="split name in RUN/data (default: every test split)")
    which.add_argument("--src", help="source file (with --ref)")
    p.add_argument("--ref", help="reference file (with --src)")
    add_model_choice(p)
    add_runtime(p)
    p.add_argument("--tag", help="results go to RUN/eval/NAME.TAG.{hyp,json} (default: a tag naming a non-default "
                                 "checkpoint, ensemble or quantisation; none for the model training chose, final.pt)")
    p.set_defaults(func=cmd_eval)


def register_score(sub) -> None:
    p = sub.add_parser("score", help="score existing translations with sacreBLEU (BLEU, chrF)")
    p.add_argument("--hyp", required=True, help="hypothesis file, one sentence per line")
    p.add_argument("--ref", required=True, help="reference file, one sentence per line")
    p.add_argument("--json", action="store_true", help="print the scores and signatures as JSON")
    p.set_defaults(func=cmd_score)
