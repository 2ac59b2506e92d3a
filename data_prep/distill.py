"""`mt distill`: sequence-level knowledge distillation (Kim and Rush 2016). A teacher (one run, or an ensemble of
runs of the same prepared data) translates its own training sources; a smaller student learns from those
translations instead of the references, and gets close to the teacher's beam search with its own greedy search.

    mt distill --teacher runs/multi30k-en-de --student runs/student [model.emb_dim=128 model.hidden_dim=256 ...]

Three stages, in order, each also alone with ``--stage`` and each resumable:

1. ``translate``: the teacher's training sources (RUN/data/encoded/train.arrow, as cleaned), searched with beam
   ``--beam`` (default: the teacher's ``decode.beam``) in chunks appended to STUDENT/distill/corpus/train.SRC and
   train.TGT. After each chunk, STUDENT/distill/progress.json records the lines and bytes written; a killed run
   continues after the last recorded chunk (a chunk cut short is cut off the files).
2. ``prepare``: `mt prepare` of that corpus into STUDENT/data with the teacher's tokenizer (so teacher and student
   share a vocabulary); validation and test splits are the teacher's, with their original references. The
   original training pairs follow the teacher's translations (``--no-keep-references``: the translations alone).
3. ``train``: `mt train` on STUDENT with the recipe and the overrides.

The student is ``STUDENT_DEFAULTS`` (embeddings 256, hidden 256, greedy decoding) where the overrides do not say
otherwise. On Multi30k en-de (docs/results.md, "The original references kept", two seeds per arm), that student
trained on the translations and the original pairs was level with its teacher's beam search (+0.27 and -0.30
BLEU) at 5x its speed; on the translations alone it lost 1.5-1.9.

The teacher's translations are its model's own output: the text pipeline (sentence splitting, protected spans,
re-casing) is off for them, as it is for training data.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
from pathlib import Path

from mt.errors import MTError
from mt.files import atomic_write
from mt.run import RunDir
from mt.text import one_line

__all__ = ["STAGES", "distill", "translate_sources"]

STAGES = ("translate", "prepare", "train")
# the student's settings unless the overrides say otherwise: on Multi30k (docs/results.md, "Students"), 256/256
# at 4.7-6x its teacher's beam speed lost less than 128/256 at the same speed, and its greedy search was within
# 0.1 BLEU of its own beam search
STUDENT_DEFAULTS = ("model.emb_dim=256", "model.hidden_dim=256", "decode.beam=1")
PIPELINE_OFF = ["decode.split_sentences=false", "decode.protect_spans=false", "decode.recase=false"]
CHUNK = 2000  # lines per translation call and per progress record


def distill(teachers: list[str], student: str, overrides: list[str], stages: tuple[str, ...] = STAGES,
            beam: int | None = None, keep_references: bool = True) -> int:
    from mt.cli import main

    given = {o.split("=", 1)[0].strip() for o in overrides}
    overrides = [d for d in STUDENT_DEFAULTS if d.split("=", 1)[0] not in given] + list(overrides)
    teacher, out = RunDir.of(teachers[0]), RunDir.of(student)
    meta = teacher.meta()
    corpus = out.root / "distill" / "corpus"
    if "translate" in stages:
        translate_sources(teachers, out.root / "distill", meta, beam)
        if keep_references:
            _append_references(teacher, corpus, meta)
        _write_eval_splits(teacher, corpus, meta)
    if "prepare" in stages:
        if not (out.root / "distill" / "progress.json").is_file():
            raise MTError(f"{out.root} has no teacher translations yet: run the translate stage first")
        code = main(["prepare", "--run", str(out.root), "--data-dir", str(corpus), "--src", meta["src"],
                     "--tgt", meta["tgt"], "--tokenizer-from", str(teacher.root), *overrides])
        if code:
            return code
    if "train" in stages:
        return main(["train", "--run", str(out.root), *[o for o in overrides if not o.startswith("data.")]])
    return 0


def translate_sources(teachers: list[str], folder: Path, meta: dict, beam: int | None = None) -> int:
    """Stage 1: the teacher's translations of its training sources -> FOLDER/corpus/train.{src,tgt}; resumes
    after the last complete chunk. -> lines translated in all."""
    from tqdm import tqdm

    from mt.decode.translator import Translator

    teacher, names = RunDir.of(teachers[0]), [str(RunDir.of(t).root) for t in teachers]
    train = teacher.encoded()["train"]  # memory-mapped: read a chunk at a time
    corpus = folder / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    files = [corpus / f"train.{meta['src']}", corpus / f"train.{meta['tgt']}"]
    progress_path = folder / "progress.json"
    done = json.loads(progress_path.read_text()) if progress_path.is_file() else {"lines": 0, "bytes": [0, 0]}
    if done.get("teachers", names) != names:
        raise MTError(f"{folder} holds the translations of other teachers ({', '.join(done['teachers'])}); "
                      "use another --student")
    if done["lines"] >= train.num_rows:
        return done["lines"]
    for path, size in zip(files, done["bytes"]):  # a chunk written after the last record is cut off
        with open(path, "ab") as f:
            f.truncate(size)
    translator = Translator.from_run(teacher.root, ensemble=teachers[1:])
    translator.set_decoding(PIPELINE_OFF)
    bar = tqdm(total=train.num_rows, initial=done["lines"], desc="teacher translates", unit=" sentences",
               dynamic_ncols=True, mininterval=1.0)
    with open(files[0], "a", encoding="utf-8") as src_out, open(files[1], "a", encoding="utf-8") as tgt_out:
        for start in range(done["lines"], train.num_rows, CHUNK):
            chunk = train[start:start + CHUNK]["src"]
            for source, translation in zip(chunk, translator.translate(chunk, beam=beam)):
                src_out.write(source + "\n")
                tgt_out.write(one_line(translation) + "\n")
            for f in (src_out, tgt_out):
                f.flush()
                os.fsync(f.fileno())
            done = {"teachers": names, "lines": start + len(chunk),
                    "bytes": [p.stat().st_size for p in files], "beam": beam or translator.cfg.decode.beam}
            atomic_write(progress_path, json.dumps(done), what="distillation progress")
            bar.update(len(chunk))
    bar.close()
    return done["lines"]


def _append_references(teacher: RunDir, corpus: Path, meta: dict) -> None:
    """``--keep-references``: the original training pairs after the distilled ones, once. An append that a crash
    cut short is cut back to the end of the translations (progress.json's sizes) and made again."""
    marker = corpus.parent / "references.added"
    if marker.exists():
        return
    translated = json.loads((corpus.parent / "progress.json").read_text())["bytes"]
    train = teacher.encoded()["train"]
    for (column, lang), size in zip((("src", meta["src"]), ("tgt", meta["tgt"])), translated):
        with open(corpus / f"train.{lang}", "r+b") as f:
            f.truncate(size)
            f.seek(size)
            for start in range(0, train.num_rows, CHUNK):  # a chunk at a time: the corpus may not fit in memory
                f.write("".join(line + "\n" for line in train[start:start + CHUNK][column]).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
    atomic_write(marker, "the original training pairs follow the distilled ones in corpus/train.*\n",
                 what="distillation progress")


def _write_eval_splits(teacher: RunDir, corpus: Path, meta: dict) -> None:
    """The teacher's validation and test splits, sources and original references, as the student's."""
    for name in teacher.encoded():
        if name == "train":
            continue
        for lines, lang in zip(teacher.split_texts(name), (meta["src"], meta["tgt"])):
            text = "".join(line + "\n" for line in lines).encode("utf-8")
            atomic_write(corpus / f"{name}.{lang}.gz", gzip.compress(text, mtime=0), what="evaluation split")


def cmd_distill(args: argparse.Namespace) -> int:
    stages = STAGES if args.stage == "all" else (args.stage,)
    return distill(args.teacher, args.student, args.overrides, stages, args.beam, args.keep_references)


def register(sub) -> None:
    p = sub.add_parser("distill", help="train a small student on a teacher's translations (sequence-level "
                                       "knowledge distillation)")
    p.add_argument("--teacher", nargs="+", required=True, metavar="RUN",
                   help="the teacher run; several runs of the same prepared data: their ensemble teaches")
    p.add_argument("--student", required=True, metavar="RUN", help="the student's run folder (made if missing)")
    p.add_argument("--stage", choices=["all", *STAGES], default="all", help="one stage alone (default: all, in order)")
    p.add_argument("--beam", type=int, help="the teacher's beam size (default: its decode.beam)")
    p.add_argument("--keep-references", action=argparse.BooleanOptionalAction, default=True,
                   help="train the student on the original pairs beside the teacher's translations (default; "
                        "--no-keep-references: the translations alone)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="the student's settings (default model.emb_dim=256 model.hidden_dim=256 decode.beam=1), "
                        "e.g. model.hidden_dim=384 train.max_minutes=30")
    p.set_defaults(func=cmd_distill)
