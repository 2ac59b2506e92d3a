"""Hostile input, property-based round trips, full disks, unwritable runs and mismatched checkpoints."""

from __future__ import annotations

import errno
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import SRC_WORDS, TINY_OVERRIDES, synthetic_pairs, write_split
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mt.checkpoint
from mt.checkpoint import load_checkpoint
from mt.cli import main, resolve_config
from mt.decode.translator import Translator
from mt.errors import MTError
from mt.run import RunDir
from mt.text import decode_lines, iter_lines, normalize, read_lines

# ---------------------------------------------------------------- property-based round trips

ANY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60)


@given(ANY_TEXT)
def test_normalize_is_idempotent_and_single_line(text):
    once = normalize(text)
    assert normalize(once) == once
    assert "\n" not in once and once == once.strip()


@given(st.lists(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\n\r"),
                        max_size=20), max_size=10))
def test_decode_lines_round_trips_any_text(lines):
    data = "".join(x + "\n" for x in lines).encode("utf-8")
    assert decode_lines(data, "x") == [x.removeprefix("\ufeff") if i == 0 else x for i, x in enumerate(lines)]


def test_a_byte_order_mark_is_not_part_of_the_first_word(tmp_path):
    """Files saved by Windows editors start with U+FEFF; it used to stick to line 1's first word (a word the
    tokenizer had never seen, in training data, translation input and references alike)."""
    path = tmp_path / "in.txt"
    path.write_bytes("\ufeffA dog runs.\n\ufeffkept inside\n".encode("utf-8"))
    assert read_lines(path)[0] == list(iter_lines(path)) == ["A dog runs.", "\ufeffkept inside"]


@given(st.binary(max_size=200))
def test_decode_lines_either_decodes_or_names_the_line(data):
    try:
        lines = decode_lines(data, "input")
    except MTError as e:
        assert str(e).startswith("input line ") and "not UTF-8" in str(e)
    else:
        assert len(lines) == data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


@pytest.fixture(scope="module")
def translator(trained_run: Path) -> Translator:
    return Translator.from_run(trained_run, threads=1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(SRC_WORDS), min_size=1, max_size=12))
def test_tokenizer_round_trips_in_vocabulary_text(translator, words):
    text = " ".join(words)
    assert translator.tokenizer.decode_src(translator.tokenizer.encode_src([text]))[0] == text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ANY_TEXT, max_size=6), st.integers(1, 3))
def test_translation_answers_every_line(translator, texts, beam):
    out = translator.translate_batch(texts, beam=beam)
    assert [t.source for t in out] == texts
    assert all(isinstance(t.text, str) and t.text.count("\n") <= x.count("\n") for t, x in zip(out, texts))  # paragraphs
    assert all(t.text == "" for t, x in zip(out, texts) if not normalize(x))


# ---------------------------------------------------------------- hostile input through the CLI

def _random_unicode_line(rng: random.Random) -> str:
    pools = [(0x0000, 0x001F), (0x0300, 0x036F), (0x0590, 0x05FF), (0x0600, 0x06FF), (0xE000, 0xF8FF),
             (0x1F300, 0x1FAFF), (0x200B, 0x200F), (0x202A, 0x202E), (0x0041, 0x007A), (0x4E00, 0x9FFF)]
    chars = []
    for _ in range(rng.randint(0, 80)):
        lo, hi = rng.choice(pools)
        chars.append(chr(rng.randint(lo, hi)))
    return "".join(chars).replace("\n", " ").replace("\r", " ")


def hostile_lines(n: int = 200, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [_random_unicode_line(rng) for _ in range(n)]


def run_cli(args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mt", *args], input=stdin, capture_output=True, timeout=600)


@pytest.mark.slow
def test_translate_survives_hostile_unicode_and_a_1mb_line(trained_run: Path):
    lines = hostile_lines()
    lines.insert(100, ("the dog runs " * 80000)[:1_000_000])  # a 1 MB line
    data = "\n".join(lines).encode("utf-8") + b"\n"
    # outputs capped at 0.1 x their part's length + 1 (decode.max_len_*): the toy model may repeat itself to the
    # limit on a part 20 times longer than its sentences, and 4,662 parts at 1.5 x + 10 take minutes
    result = run_cli(["translate", "--run", str(trained_run), "--beam", "2", "decode.max_len_ratio=0.1",
                      "decode.max_len_extra=1"], data)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    out = result.stdout.decode("utf-8").split("\n")
    assert len(out) == len(lines) + 1 and out[-1] == ""
    # the 1 MB line (one "sentence" of 240,000 words) was cut at spaces into parts that fit, all translated
    assert len(out[100].split()) > 1000, out[100][:200]
    assert "Traceback" not in result.stderr.decode()


def test_eval_survives_hostile_unicode(trained_run: Path, tmp_path: Path, capsys):
    lines = hostile_lines(200, seed=1)
    (tmp_path / "hostile.en").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    (tmp_path / "hostile.de").write_text("".join(x + "\n" for x in reversed(lines)), encoding="utf-8")
    assert main(["eval", "--run", str(trained_run), "--src", str(tmp_path / "hostile.en"),
                 "--ref", str(tmp_path / "hostile.de"), "--beam", "2"]) == 0
    report = json.loads((trained_run / "eval" / "hostile.json").read_text())
    assert report["sentences"] == 200
    assert len((trained_run / "eval" / "hostile.hyp").read_text(encoding="utf-8").split("\n")) == 201


def test_binary_input_file_names_the_line(trained_run: Path, tmp_path: Path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"the dog\nok\n\x00\x9f\x92\x96 binary\n")
    assert main(["translate", "--run", str(trained_run), "--input", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {bad} line 3: bytes that are not UTF-8 at byte 1 of the line"


# ---------------------------------------------------------------- full disks, unwritable runs, mismatches

@pytest.fixture
def one_epoch_run(tmp_path: Path, train_tiny) -> Path:
    return train_tiny(1)


def test_disk_full_during_training_keeps_the_last_good_checkpoint(one_epoch_run: Path, monkeypatch, capsys):
    last = one_epoch_run / "checkpoints" / "last.pt"
    good = load_checkpoint(last)["progress"]["step"]
    real_save, calls = torch.save, []

    def save_until_full(obj, f, *args, **kwargs):
        calls.append(1)
        real_save(obj, f, *args, **kwargs)
        if len(calls) >= 2:  # the second write in this run hits a full disk, after writing part of the file
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mt.checkpoint.torch, "save", save_until_full)
    code = main(["train", "--run", str(one_epoch_run), *TINY_OVERRIDES, "train.max_epochs=4",
                 "train.checkpoint_minutes=0.0001"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1 and errors[0].startswith("error: cannot write checkpoint")
    assert "No space left on device" in errors[0] and "previous checkpoint is intact" in errors[0]
    state = load_checkpoint(last)  # still loadable: the failed write never replaced it
    assert state["progress"]["step"] > good  # the first, successful mid-epoch save of this run
    assert not list(last.parent.glob(".*tmp*"))
    monkeypatch.undo()
    assert main(["train", "--run", str(one_epoch_run), *TINY_OVERRIDES, "train.max_epochs=2"]) == 0  # resumes


def test_unwritable_run_folder_is_one_line(one_epoch_run: Path, capsys):
    shutil.rmtree(one_epoch_run / "checkpoints")
    (one_epoch_run / "checkpoints").write_text("not a folder")  # like a read-only or broken mount
    assert main(["train", "--run", str(one_epoch_run), *TINY_OVERRIDES, "train.max_epochs=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "checkpoints" in err and err.startswith("error: ")


def test_checkpoint_of_another_language_pair_is_refused(trained_run: Path, tmp_path: Path, capsys):
    corpus = tmp_path / "corpus_fr"
    corpus.mkdir()
    pairs = [(s, t.replace("der", "le").replace("ein", "un")) for s, t in synthetic_pairs(300, seed=4)]
    write_split(corpus, "train", pairs, tgt="fr")
    write_split(corpus, "val", pairs[:20], tgt="fr")
    other = tmp_path / "en-fr"
    assert main(["prepare", "--run", str(other), "--data-dir", str(corpus), "--src", "en", "--tgt", "fr",
                 "--config", "configs/tiny.yaml", *TINY_OVERRIDES]) == 0
    capsys.readouterr()
    foreign = trained_run / "checkpoints" / "best.pt"
    assert main(["translate", "--run", str(other), "--checkpoint", str(foreign)], ) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "different tokenizer" in err
    (other / "checkpoints").mkdir()
    shutil.copy(foreign, other / "checkpoints" / "last.pt")
    assert main(["train", "--run", str(other), *TINY_OVERRIDES, "data.tgt=fr"]) == 2
    assert "another tokenizer" in capsys.readouterr().err
    assert main(["train", "--run", str(other), *TINY_OVERRIDES, "data.tgt=de"]) == 2
    assert "prepared for en->fr" in capsys.readouterr().err


def test_train_refuses_data_settings_the_run_was_not_prepared_with(corpus: Path, tmp_path: Path, capsys):
    """Training reads the tokenizer and the encoded splits as `mt prepare` made them, so a data.* override given
    to `mt train` would be silently ignored: it is refused before RUN/config.yaml records it."""
    run = tmp_path / "run"
    prepare = ["prepare", "--run", str(run), "--data-dir", str(corpus), "--src", "en", "--tgt", "de",
               "--config", "configs/tiny.yaml", *TINY_OVERRIDES]
    assert main(prepare) == 0
    config_before = (run / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["train", "--run", str(run), *TINY_OVERRIDES, "data.vocab_size=80", "data.dedup=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "prepared with data.vocab_size=60, data.dedup=true but the config says data.vocab_size=80 " \
           "data.dedup=false" in err
    assert (run / "config.yaml").read_text() == config_before
    assert not (run / "checkpoints").exists()
    assert main([*prepare, "data.vocab_size=80"]) == 0  # prepared with it, training accepts it
    RunDir.of(run).require_data_matches(resolve_config(RunDir.of(run), None, ["data.vocab_size=80"]))


def test_make_data_passes_data_settings_to_prepare():
    """`make train RUN=R ARGS="data.vocab_size=4000"` prepares R with that vocabulary (the other keys go to
    `mt train` only)."""
    out = subprocess.run(["make", "-n", "--always-make", "data", "RUN=runs/x",
                          "ARGS=data.vocab_size=4000 train.lr=0.001"],
                         capture_output=True, text=True, check=True).stdout
    assert "mt prepare --run runs/x" in out
    assert "data.vocab_size=4000" in out and "train.lr" not in out, out


def test_truncated_last_checkpoint_falls_back_to_best(one_epoch_run: Path, capsys, caplog):
    ckpt = one_epoch_run / "checkpoints"
    best_step = load_checkpoint(ckpt / "best.pt")["progress"]["step"]
    data = (ckpt / "last.pt").read_bytes()
    (ckpt / "last.pt").write_bytes(data[: len(data) // 3])  # a file cut short (e.g. copied off a full disk)
    with caplog.at_level("WARNING", logger="mt"):
        assert main(["train", "--run", str(one_epoch_run), *TINY_OVERRIDES, "train.max_epochs=2"]) == 0
    assert "last.pt is damaged" in caplog.text and "trying the previous checkpoint" in caplog.text
    assert f"resuming from best.pt: step {best_step}" in capsys.readouterr().out
    assert load_checkpoint(ckpt / "last.pt")["progress"]["epoch"] == 2  # rewritten whole
