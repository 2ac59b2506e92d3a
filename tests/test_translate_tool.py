"""mt translate as a tool: a filter that answers line by line, long lines whole, scores of given translations,
output formats, decode overrides, and one exported model file that works alone."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mt.cli import main
from mt.data.batching import collate, make_batches
from mt.decode.force import score_references
from mt.decode.segment import SENTENCE_END, split_to_fit
from mt.decode.translator import Translator
from mt.model.loss import SummedLoss
from mt.text import normalize

SENTENCES = ["the dog runs", "a red cat sits near the man", "the big woman eats with a child",
             "a small blue dog jumps over the cat"]


@pytest.fixture(scope="module")
def translator(trained_run: Path) -> Translator:
    return Translator.from_run(trained_run, threads=1)


def test_a_pipe_gets_each_answer_before_its_input_ends(trained_run):
    """A program that writes a line and waits for its translation gets it: the input is not read to its end
    before translating."""
    proc = subprocess.Popen([sys.executable, "-m", "mt", "translate", "--run", str(trained_run), "--beam", "1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        answers = []
        for line in SENTENCES[:2]:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
            answers.append(proc.stdout.readline().decode())  # blocks until this line is answered
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
    finally:
        proc.kill()
    expected = Translator.from_run(trained_run).translate_batch(SENTENCES[:2], beam=1)
    assert answers == [t.text + "\n" for t in expected]


@pytest.mark.parametrize("limit", [1, 3, 7, 50])
def test_split_to_fit_keeps_every_character_within_the_limit(translator, limit):
    text = normalize(" ".join(s + "." for s in SENTENCES) + " " + "x" * 40 + " 東京は大きい。とても。")
    count = lambda texts: [len(x) for x in translator.tokenizer.encode_src(texts)]  # noqa: E731
    parts = split_to_fit(text, count, limit)
    assert all(n <= limit for n in count(parts)) or limit == 1  # one character can be several pieces
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")  # nothing lost, nothing added
    sentences = [s for s in SENTENCE_END.split(text) if s]
    if count([text])[0] > limit and max(count(sentences)) <= limit:  # one part per sentence
        assert parts == sentences


def test_a_long_line_is_translated_whole(translator):
    """A line of several sentences over the model's limit: the translation is the translations of its parts
    joined, so every sentence is translated; the parts are the line's sentences (each fits)."""
    line = ". ".join(SENTENCES) + "."
    limit = max(len(x) for x in translator.tokenizer.encode_src([s + "." for s in SENTENCES]))
    translator.max_src_tokens = limit
    try:
        whole = translator.translate_batch([line, "the dog runs"], beam=2)
    finally:
        translator.max_src_tokens = translator.cfg.data.max_tokens
    parts = translator.translate_batch([s + "." for s in SENTENCES], beam=2)
    assert whole[0].text == " ".join(p.text for p in parts)
    assert whole[1].text == translator.translate_batch(["the dog runs"], beam=2)[0].text  # short lines as before


def test_score_reference_is_the_validation_loss(translator):
    """The scores of given pairs, summed, are the validation loss of the same pairs (no label smoothing)."""
    sources, refs = SENTENCES, ["der hund rennt", "eine rote katze sitzt nahe der mann", "", "ein blau hund"]
    scores = score_references(translator, sources, refs)
    tok = translator.tokenizer
    src, tgt = tok.encode_src(sources), tok.encode_tgt(refs)
    batches = [collate([src[i] for i in b], [tgt[i] for i in b], b)
               for b in make_batches([len(s) for s in src], [len(t) for t in tgt], 10_000)]
    mean, _ = SummedLoss(translator.model).validation_loss(batches)
    assert [s.tokens for s in scores] == [len(t) + 1 for t in tgt]
    assert math.isclose(-sum(s.log_prob for s in scores) / sum(s.tokens for s in scores), mean, rel_tol=1e-4)


def test_score_reference_cli_prints_one_line_per_pair(trained_run, tmp_path, capsys):
    (tmp_path / "src").write_text("the dog runs\na cat\n")
    (tmp_path / "ref").write_text("der hund rennt\n")
    assert main(["translate", "--run", str(trained_run), "--input", str(tmp_path / "src"),
                 "--score-reference", str(tmp_path / "ref")]) == 2
    assert "2 input lines but 1 reference lines" in capsys.readouterr().err
    (tmp_path / "ref").write_text("der hund rennt\nkatze\n")
    assert main(["translate", "--run", str(trained_run), "--input", str(tmp_path / "src"),
                 "--score-reference", str(tmp_path / "ref")]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and all(float(r[0]) < 0 and math.isclose(float(r[0]) / int(r[2]), float(r[1]), abs_tol=1e-3)
                                  for r in rows)


def test_jsonl_and_alignment(trained_run, tmp_path, capsys):
    (tmp_path / "in").write_text("the red dog runs\n\n")
    assert main(["translate", "--run", str(trained_run), "--input", str(tmp_path / "in"), "--format", "jsonl",
                 "--alignment", "--nbest", "2"]) == 0
    first, empty = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (first["i"], first["source"], empty["translation"]) == (0, "the red dog runs", "")
    assert first["nbest"][0] == {"translation": first["translation"], "score": first["score"]}
    n_src = len(Translator.from_run(trained_run).tokenizer.encode_src(["the red dog runs"])[0])
    links = [tuple(map(int, link.split("-"))) for link in first["alignment"].split()]
    assert [t for _, t in links] == list(range(len(links))) and all(0 <= s < n_src for s, _ in links)
    assert main(["translate", "--run", str(trained_run), "--input", str(tmp_path / "in"), "--alignment"]) == 0
    text_line = capsys.readouterr().out.splitlines()[0]
    assert text_line == f"{first['translation']} ||| {first['alignment']}"


def test_decode_overrides_device_and_threads(trained_run, tmp_path, capsys):
    (tmp_path / "in").write_text("the dog runs\n")
    args = ["translate", "--run", str(trained_run), "--input", str(tmp_path / "in"), "--device", "cpu",
            "--threads", "1"]
    assert main([*args, "decode.batch_tokens=7", "decode.beam=1"]) == 0
    assert capsys.readouterr().out == Translator.from_run(trained_run).translate_batch(["the dog runs"], beam=1)[0].text + "\n"
    assert main([*args, "model.dropout=0.1"]) == 2
    assert "only decode.* keys apply when translating" in capsys.readouterr().err


def test_output_file_is_replaced_only_when_complete(trained_run, tmp_path, capsys):
    out = tmp_path / "out.txt"
    out.write_text("earlier results\n")
    (tmp_path / "in").write_bytes(b"the dog\nthe cat\n\xff\n")
    assert main(["translate", "--run", str(trained_run), "--input", str(tmp_path / "in"), "--output", str(out),
                 "--chunk-lines", "1"]) == 2
    assert "line 3: bytes that are not UTF-8" in capsys.readouterr().err
    assert out.read_text() == "earlier results\n" and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_exported_file_alone_translates_like_its_run(trained_run, tmp_path):
    """`mt export`, the file copied alone into an empty folder, `mt translate --model` run there: the same
    translations as the run; int8 weights: a smaller file that still translates; a damaged copy: one line."""
    out = tmp_path / "model.mt"
    assert main(["export", "--run", str(trained_run), "--output", str(out)]) == 0
    alone = tmp_path / "elsewhere"
    alone.mkdir()
    shutil.copy(out, alone / "model.mt")
    lines = "\n".join(SENTENCES) + "\n"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    there = subprocess.run([sys.executable, "-m", "mt", "translate", "--model", "model.mt"], input=lines.encode(),
                           capture_output=True, cwd=alone, env=env, timeout=120)
    assert there.returncode == 0, there.stderr.decode()[-1000:]
    expected = "".join(t.text + "\n" for t in Translator.from_run(trained_run).translate_batch(SENTENCES))
    assert there.stdout.decode() == expected
    alone_translator = Translator.from_file(alone / "model.mt")
    facts = alone_translator.facts
    assert (facts["src"], facts["tgt"]) == ("en", "de") and facts["step"] > 0
    # the training sources' mean length travels with the file (long unpunctuated stretches are cut near it)
    assert alone_translator.sentence_tokens == Translator.from_run(trained_run).sentence_tokens > 0
    assert alone_translator.src_language == "en"

    small = tmp_path / "int8.mt"
    assert main(["export", "--run", str(trained_run), "--output", str(small), "--int8"]) == 0
    saved = out.stat().st_size - small.stat().st_size  # the tokenizer is most of a tiny model's file
    assert saved > 0.5 * 4 * facts["parameters"]  # int8 matrices: well over half of the fp32 weight bytes
    assert len(Translator.from_file(small).translate_batch(SENTENCES)) == len(SENTENCES)

    damaged = alone / "model.mt"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(Exception) as err:
        Translator.from_file(damaged)
    assert "model.mt" in str(err.value) and len(str(err.value).splitlines()) == 1


def test_translate_streams_many_lines_in_chunks(trained_run, tmp_path):
    """Lines go through in chunks (memory bounded by --chunk-lines), in input order, with identical results."""
    lines = [SENTENCES[i % len(SENTENCES)] + " " * (i % 3) for i in range(57)]
    (tmp_path / "in").write_text("\n".join(lines) + "\n")
    for chunk in ("5", "1000"):
        assert main(["translate", "--run", str(trained_run), "--input", str(tmp_path / "in"), "--output",
                     str(tmp_path / f"out{chunk}"), "--chunk-lines", chunk, "--beam", "2"]) == 0
    assert (tmp_path / "out5").read_text() == (tmp_path / "out1000").read_text()
    assert len((tmp_path / "out5").read_text().splitlines()) == 57
