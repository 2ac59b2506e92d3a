"""`mt prepare`, added to the `mt` command through the ``mt.commands`` entry point (see ``mt.cli``)."""

from __future__ import annotations

import argparse

from mt.cli import add_config, add_run, resolve_config
from mt.config import save_config
from mt.errors import MTError
from mt.run import RunDir

__all__ = ["register"]


def cmd_prepare(args: argparse.Namespace) -> int:
    from data_prep.prepare import BackTranslations, prepare, summary

    run = RunDir.of(args.run)
    reuse = RunDir.of(args.tokenizer_from) if args.tokenizer_from else None
    overrides = [f"data.src={args.src}", f"data.tgt={args.tgt}", *_tokenizer_settings(reuse), *args.overrides]
    if args.vocab_size is not None:
        overrides.append(f"data.vocab_size={args.vocab_size}")
    cfg = resolve_config(run, args.config, overrides)
    back = BackTranslations(*args.back_translations, tag=args.tag_back_translations) if args.back_translations else None
    if args.tag_back_translations and not back:
        raise MTError("--tag-back-translations marks the pairs of --back-translations SRC_FILE TGT_FILE: give them")
    with run.writing("prepare"):
        stats = prepare(run, cfg, data_dir=args.data_dir, hf_dataset=args.hf_dataset, hf_config=args.hf_config,
                        tokenizer_from=reuse, back_translations=back)
        save_config(cfg, run.config_path)
    print(summary(stats, run))
    return 0


def _tokenizer_settings(reuse: RunDir | None) -> list[str]:
    """--tokenizer-from RUN: RUN's tokenizer settings (joint or not, size, type) as overrides, so the new run's
    config says what its tokenizer is; the user's own overrides come after them (a contradiction is refused)."""
    if reuse is None:
        return []
    meta = reuse.meta()
    joint = meta["src_model"] == meta["tgt_model"]
    data = meta["data"]
    settings = [f"data.joint_vocab={str(joint).lower()}"]
    settings += [f"data.{key}={data[key]}" for key in ("vocab_size", "spm_model_type", "character_coverage", "byte_fallback")]
    return settings + ([] if joint else ["model.share_embeddings=false"])


def register(sub) -> None:
    p = sub.add_parser("prepare", help="load, clean and encode a parallel corpus into RUN/data")
    add_run(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", help="folder with train.L, val.L (or valid.L, dev.L) and NAME.L test files")
    source.add_argument("--hf-dataset", help="Hugging Face Hub dataset name, e.g. bentrevett/multi30k")
    p.add_argument("--hf-config", help="Hub dataset configuration name")
    p.add_argument("--src", required=True, help="source language code, e.g. en")
    p.add_argument("--tgt", required=True, help="target language code, e.g. de")
    p.add_argument("--vocab-size", type=int, help="SentencePiece vocabulary size (data.vocab_size)")
    p.add_argument("--tokenizer-from", metavar="RUN",
                   help="encode with the SentencePiece model(s) of this prepared run instead of training new ones "
                        "(a shared vocabulary for fine-tuning, transfer and back-translation)")
    p.add_argument("--back-translations", nargs=2, metavar=("SRC_FILE", "TGT_FILE"),
                   help="synthetic pairs added to the training split, cleaned and filtered like it and counted apart "
                        "(TGT_FILE: target-language text; SRC_FILE: its translation by a reverse model, "
                        "`mt translate --sample`)")
    p.add_argument("--tag-back-translations", action="store_true",
                   help="start every synthetic source with the <s> tag, so the model can tell them apart")
    add_config(p, default="RUN/config.yaml, else the package defaults")
    p.set_defaults(func=cmd_prepare)
