"""`mt distill` on the tiny synthetic task: the teacher's translations (and the original pairs) become the student's
training data (the teacher's tokenizer, its evaluation splits), a killed translation stage resumes, and the
student learns."""

from __future__ import annotations

import json

from conftest import TINY_OVERRIDES

from data_prep import distill as distill_module
from mt.cli import main
from mt.decode.translator import Translator
from mt.files import read_jsonl
from mt.run import RunDir

STUDENT = ["model.emb_dim=24", "model.hidden_dim=48"]


def test_a_killed_translation_stage_resumes_after_its_last_chunk(trained_run, tmp_path, monkeypatch):
    monkeypatch.setattr(distill_module, "CHUNK", 64)
    calls = []
    real = Translator.translate

    def dies_on_the_third_chunk(self, texts, **kwargs):
        calls.append(len(texts))
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C (or a kill) in the middle of the stage
        return real(self, texts, **kwargs)

    monkeypatch.setattr(Translator, "translate", dies_on_the_third_chunk)
    student = tmp_path / "student"
    args = ["distill", "--teacher", str(trained_run), "--student", str(student), "--stage", "translate",
            "--no-keep-references"]
    assert main(args) == 130
    progress = json.loads((student / "distill" / "progress.json").read_text())
    assert progress["lines"] == 128
    corpus = student / "distill" / "corpus"
    with open(corpus / "train.de", "a", encoding="utf-8") as f:
        f.write("half a chunk that the kill cut short\n")

    calls.clear()
    monkeypatch.setattr(Translator, "translate", real)
    assert main(args) == 0
    sources = RunDir.of(trained_run).encoded()["train"]["src"]
    src_lines = (corpus / "train.en").read_text(encoding="utf-8").splitlines()
    tgt_lines = (corpus / "train.de").read_text(encoding="utf-8").splitlines()
    assert src_lines == list(sources) and len(tgt_lines) == len(sources)
    teacher = Translator.from_run(trained_run)
    teacher.set_decoding(distill_module.PIPELINE_OFF)
    assert tgt_lines == teacher.translate(list(sources))  # what one uninterrupted pass writes, chunk by chunk
    assert sorted(p.name for p in corpus.iterdir()) == ["test_toy.de.gz", "test_toy.en.gz", "train.de", "train.en",
                                                         "val.de.gz", "val.en.gz"]


def test_kept_references_follow_the_translations_once_even_after_a_crash_in_the_append(trained_run, tmp_path):
    student = tmp_path / "student"
    args = ["distill", "--teacher", str(trained_run), "--student", str(student), "--stage", "translate"]
    assert main(args) == 0  # the original pairs are kept by default
    corpus = student / "distill" / "corpus"
    train = RunDir.of(trained_run).encoded()["train"]
    for column, lang in (("src", "en"), ("tgt", "de")):
        lines = (corpus / f"train.{lang}").read_text(encoding="utf-8").splitlines()
        assert len(lines) == 2 * train.num_rows and lines[train.num_rows:] == list(train[column])
    kept = {lang: (corpus / f"train.{lang}").read_bytes() for lang in ("en", "de")}

    (student / "distill" / "references.added").unlink()  # a crash after part of the append, before its marker
    with open(corpus / "train.de", "a", encoding="utf-8") as f:
        f.write("a reference that was written twice\nhalf a ref")
    assert main(args) == 0
    assert {lang: (corpus / f"train.{lang}").read_bytes() for lang in ("en", "de")} == kept
    assert main(args) == 0  # the marker stops a second append
    assert {lang: (corpus / f"train.{lang}").read_bytes() for lang in ("en", "de")} == kept


def test_the_student_learns_from_the_teacher_with_its_tokenizer(trained_run, tmp_path, capsys):
    student = tmp_path / "student"
    tiny = [o for o in TINY_OVERRIDES if not o.startswith("decode.beam=")]  # the student's default decides
    args = ["distill", "--teacher", str(trained_run), "--student", str(student), *tiny, *STUDENT,
            "train.max_epochs=4", "train.validate_min_steps=10"]  # twice the teacher's pairs: translations, originals
    assert main(args) == 0
    run, teacher = RunDir.of(student), RunDir.of(trained_run)
    assert run.meta()["tokenizer_sha256"] == teacher.meta()["tokenizer_sha256"]  # one vocabulary for both
    assert run.config().model.hidden_dim == 48  # the overrides win over the student defaults ...
    assert run.config().decode.beam == 1  # ... which fill in the rest: students decode greedily
    assert run.encoded()["val"]["ref"] == teacher.encoded()["val"]["ref"]  # evaluated on the original references
    valid = read_jsonl(student / "train_log.jsonl", "valid")
    assert valid[-1]["val_bleu"] > 10 and valid[-1]["val_bleu"] > valid[0]["val_bleu"]
