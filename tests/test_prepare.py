"""mt prepare: round trip, filters, cache reuse, and a clear one-line error for each kind of bad input."""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from conftest import synthetic_pairs, write_split

from data_prep.prepare import prepare
from mt.cli import main
from mt.config import Config, apply_overrides
from mt.errors import MTError
from mt.run import RunDir
from mt.text import normalize


def small_cfg(**data) -> Config:
    """The recipe with these data.* settings (a vocabulary per side also needs separate embeddings; a tiny one,
    no byte fallback)."""
    model = ["model.share_embeddings=false"] if data.get("joint_vocab") == "false" else []
    data = {"vocab_size": 60, "byte_fallback": "false", **data}
    return apply_overrides(Config(), [f"data.{k}={v}" for k, v in data.items()] + model)


def test_round_trip_and_splits(corpus, tmp_path):
    run = RunDir.of(tmp_path / "run")
    # An odd line in a test split: extra spaces, a tab and a decomposed umlaut (u + combining diaeresis).
    with open(corpus / "test_toy.en", "a", encoding="utf-8") as f:
        f.write("  the   dog\tjumps  ")
    with open(corpus / "test_toy.de", "a", encoding="utf-8") as f:
        f.write("hund  gru\u0308n\n")
    stats = prepare(run, small_cfg(), data_dir=str(corpus))
    encoded = run.encoded()
    assert set(encoded) == {"train", "val", "test_toy"}
    assert len(encoded["val"]) == 40 and len(encoded["test_toy"]) == 31  # evaluation splits stay line for line
    tok = run.tokenizer()
    for split in encoded.values():
        rows = split.select(range(min(len(split), 25)))
        assert tok.decode_src(rows["src_ids"]) == rows["src"]
        assert tok.decode_tgt(rows["tgt_ids"]) == rows["tgt"]
    last = encoded["test_toy"][30]
    assert last["src"] == "the dog jumps"
    assert last["tgt"] == "hund gr\u00fcn"  # NFC
    assert last["ref"] == "hund  gru\u0308n"  # the reference exactly as given, for scoring
    assert stats["tokenizer"]["src_vocab_size"] == 60
    assert stats["splits"]["train"]["sentences"] == len(encoded["train"])
    assert json.loads(run.stats_path.read_text()) == stats


def test_separate_vocabularies(corpus, tmp_path):
    run = RunDir.of(tmp_path / "run")
    stats = prepare(run, small_cfg(joint_vocab="false", vocab_size=40), data_dir=str(corpus))
    tok = run.tokenizer()
    assert tok.src is not tok.tgt
    assert stats["tokenizer"]["src_model"] != stats["tokenizer"]["tgt_model"]
    assert "grün" not in {tok.src.id_to_piece(i) for i in range(tok.src_vocab_size)}


def test_filters_count_each_reason(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    pairs = synthetic_pairs(200, seed=5)
    planted = [
        ("", "ein hund"), ("a dog", "   "),                                  # 2 empty
        (pairs[0][0], pairs[0][1]), (pairs[1][0], " " + pairs[1][1] + " "),  # 2 duplicates (after normalising)
        (" ".join(["dog"] * 150), " ".join(["hund"] * 150)),                # 1 too long
        (" ".join(["the dog runs"] * 6), "hund"),                           # 1 extreme length ratio
    ]
    write_split(folder, "train", pairs + planted)
    write_split(folder, "val", synthetic_pairs(10, seed=6) + [("", "")])
    stats = prepare(RunDir.of(tmp_path / "run"), small_cfg(), data_dir=str(folder))
    f = stats["filtered"]
    assert (f["empty"], f["duplicate"], f["too_long"], f["length_ratio"]) == (2, 2, 1, 1)
    assert f["input_pairs"] == 206 and f["kept_pairs"] == 200
    assert stats["splits"]["val"]["sentences"] == 11  # never filtered, empty line kept


def test_content_filters_count_copies_numbers_and_languages(tmp_path):
    """Copies are dropped by default; numbers and languages when asked (py3langid, its model in the package)."""
    folder = tmp_path / "c"
    folder.mkdir()
    pairs = synthetic_pairs(200, seed=7)
    planted = [
        ("the dog runs", "the dog runs"),                                                        # copy
        ("flight 4217 leaves at 7", "flug 5512 startet um 9"),                                  # numbers disagree
        ("a dog with 2 cats", "ein hund mit zwei katzen"), ("2 dogs", "2 hunde"),               # numbers fine
        ("Der kleine Hund läuft schnell über die grüne Wiese zum Haus.",
         "Der kleine Hund läuft schnell über die grüne Wiese zum Haus!"),                         # German source
        ("The weather is very nice today and we are going for a long walk in the park.",
         "Le temps est très beau aujourd'hui et nous allons faire une longue promenade au parc."),  # French target
    ]
    write_split(folder, "train", pairs + planted)
    write_split(folder, "val", synthetic_pairs(10, seed=8))
    stats = prepare(RunDir.of(tmp_path / "default"), small_cfg(), data_dir=str(folder))
    assert (stats["filtered"]["copy"], stats["filtered"]["numbers"], stats["filtered"]["language"]) == (1, 0, 0)
    stats = prepare(RunDir.of(tmp_path / "all"), small_cfg(filter_numbers="true", filter_language="true"),
                    data_dir=str(folder))
    f = stats["filtered"]
    assert (f["copy"], f["numbers"], f["language"]) == (1, 1, 2)
    assert f["kept_pairs"] + f["duplicate"] == 202  # the synthetic pairs (too short to judge) and the two fine


def test_vocabulary_too_large_is_lowered_with_warning(corpus, tmp_path, caplog):
    stats = prepare(RunDir.of(tmp_path / "run"), small_cfg(vocab_size=5000), data_dir=str(corpus))
    assert 30 < stats["tokenizer"]["src_vocab_size"] < 5000
    assert "too large" in caplog.text


def test_cache_reused_then_rebuilt_when_input_changes(corpus, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mt")
    run = RunDir.of(tmp_path / "run")
    prepare(run, small_cfg(), data_dir=str(corpus))
    model_mtime = (run.data_dir / "spm.model").stat().st_mtime_ns
    caplog.clear()
    prepare(run, small_cfg(), data_dir=str(corpus))
    assert "reusing the cache" in caplog.text
    assert (run.data_dir / "spm.model").stat().st_mtime_ns == model_mtime
    write_split(corpus, "val", synthetic_pairs(20, seed=9))  # changed input
    caplog.clear()
    prepare(run, small_cfg(), data_dir=str(corpus))
    assert "reusing" not in caplog.text
    assert len(run.encoded()["val"]) == 20
    prepare(run, small_cfg(vocab_size=50), data_dir=str(corpus))  # changed config
    assert run.meta()["src_vocab_size"] == 50
    assert not list(run.root.glob(".data*")), "temporary folders left behind"


def _bad(tmp_path: Path, corpus: Path, expected: str) -> str:
    with pytest.raises(MTError) as err:
        prepare(RunDir.of(tmp_path / "run"), small_cfg(), data_dir=str(corpus))
    message = str(err.value)
    assert expected in message, message
    assert "\n" not in message
    assert not (tmp_path / "run" / "data").exists()
    return message


def test_missing_train_split(corpus, tmp_path):
    (corpus / "train.de.gz").unlink()
    _bad(tmp_path, corpus, "train.de")


def test_missing_validation_split(corpus, tmp_path):
    (corpus / "val.en").unlink()
    (corpus / "val.de").unlink()
    _bad(tmp_path, corpus, "no validation split")


def test_different_line_counts_gives_both(corpus, tmp_path):
    with open(corpus / "val.de", "a", encoding="utf-8") as f:
        f.write("ein extra satz\n")
    _bad(tmp_path, corpus, "val.en has 40 lines but")
    _bad(tmp_path, corpus, "val.de has 41")


def test_bytes_not_utf8_name_file_and_line(corpus, tmp_path):
    lines = (corpus / "val.en").read_bytes().split(b"\n")
    lines[6] = b"caf\xe9 au lait"
    (corpus / "val.en").write_bytes(b"\n".join(lines))
    _bad(tmp_path, corpus, "val.en line 7: bytes that are not UTF-8")


def test_bad_utf8_inside_gzip(corpus, tmp_path):
    (corpus / "train.en.gz").write_bytes(gzip.compress(b"ok line\n\xff\xfe broken\n"))
    _bad(tmp_path, corpus, "train.en.gz line 2")


def test_corrupt_gzip(corpus, tmp_path):
    (corpus / "train.en.gz").write_bytes(b"\x1f\x8b not really gzip")
    _bad(tmp_path, corpus, "cannot read")


def test_empty_corpus(corpus, tmp_path):
    write_split(corpus, "train", [("", "")] * 3, gz=True)
    _bad(tmp_path, corpus, "no pair with both sides non-empty")
    for lang in ("en", "de"):
        (corpus / f"train.{lang}.gz").write_bytes(gzip.compress(b""))
    _bad(tmp_path, corpus, "split 'train' is empty")


def test_unreadable_and_missing_paths(tmp_path):
    _bad(tmp_path, tmp_path / "nowhere", "data folder not found")


def test_failed_prepare_keeps_previous_data(corpus, tmp_path, monkeypatch):
    run = RunDir.of(tmp_path / "run")
    prepare(run, small_cfg(), data_dir=str(corpus))
    before = run.meta()
    import data_prep.prepare as module

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "train_sentencepiece", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare(run, small_cfg(vocab_size=50), data_dir=str(corpus))
    assert run.meta() == before and len(run.encoded()["train"]) > 0
    assert not list(run.root.glob(".data*"))


def _hub(monkeypatch, dsd):
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: dsd)


def test_hub_translation_column(monkeypatch, tmp_path):
    def split(n, seed):
        return datasets.Dataset.from_dict({"translation": [{"en": s, "de": t} for s, t in synthetic_pairs(n, seed)]})

    _hub(monkeypatch, datasets.DatasetDict(train=split(300, 1), validation=split(20, 2), test=split(10, 3)))
    stats = prepare(RunDir.of(tmp_path / "run"), small_cfg(), hf_dataset="someone/pairs")
    assert set(stats["splits"]) == {"train", "val", "test"}
    assert stats["origin"] == "hub:someone/pairs"


def test_hub_language_columns_and_unknown_language(monkeypatch, tmp_path):
    def split(n, seed):
        pairs = synthetic_pairs(n, seed)
        return datasets.Dataset.from_dict({"en": [p[0] for p in pairs], "de": [p[1] for p in pairs]})

    _hub(monkeypatch, datasets.DatasetDict(train=split(300, 1), validation=split(20, 2)))
    stats = prepare(RunDir.of(tmp_path / "run"), small_cfg(), hf_dataset="someone/pairs")
    assert stats["splits"]["val"]["sentences"] == 20
    with pytest.raises(MTError, match="no column for language 'fr'; columns are en, de"):
        prepare(RunDir.of(tmp_path / "run2"), small_cfg(tgt="fr"), hf_dataset="someone/pairs")


def test_cli_prepare_writes_config_and_reports(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["prepare", "--run", str(run), "--data-dir", str(corpus), "--src", "en", "--tgt", "de",
                 "--vocab-size", "60", "--config", "configs/tiny.yaml"])
    assert code == 0
    out = capsys.readouterr().out
    assert "train: kept 400 of 400 pairs" in out or "train: kept" in out
    assert RunDir.of(run).config().data.vocab_size == 60


def test_cli_bad_input_is_one_line_exit_2(corpus, tmp_path):
    (corpus / "val.en").write_bytes(b"\xff\n" * 40)
    result = subprocess.run(
        [sys.executable, "-m", "mt", "prepare", "--run", str(tmp_path / "run"), "--data-dir", str(corpus),
         "--src", "en", "--tgt", "de"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {corpus / 'val.en'} line 1: bytes that are not UTF-8 at byte 0 of the line"]


@pytest.mark.parametrize(
    "raw, expected",
    [("a  b", "a b"), ("\tA\u00a0dog\n", "A dog"), ("e\u0301", "\u00e9"), ("", ""), ("   ", ""),
     ("a\x00dog\x1b[31m \x7f", "a dog [31m"), ("\x00", "")],  # NUL and other controls: spaces (SentencePiece, the log)
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def _encoded_columns(run: RunDir) -> dict:
    return {name: {col: split[col][:] for col in split.column_names} for name, split in run.encoded().items()}


def test_chunk_size_changes_nothing(tmp_path, monkeypatch):
    """Streaming: duplicates across chunks, filters and statistics do not depend on where chunks end."""
    import data_prep.prepare as module

    folder = tmp_path / "c"
    folder.mkdir()
    pairs = synthetic_pairs(150, seed=3)
    write_split(folder, "train", pairs + pairs[:20] + [("", "x"), (" ".join(["dog"] * 150), "hund")], gz=True)
    write_split(folder, "val", synthetic_pairs(12, seed=4))
    runs = []
    for chunk in (module.CHUNK, 7):
        monkeypatch.setattr(module, "CHUNK", chunk)
        run = RunDir.of(tmp_path / f"run{chunk}")
        stats = prepare(run, small_cfg(), data_dir=str(folder))
        runs.append((stats, _encoded_columns(run), (run.data_dir / "spm.model").read_bytes()))
    (big, big_cols, big_model), (small, small_cols, small_model) = runs
    # 20 planted copies (the synthetic pairs hold one more), 1 empty side, 1 too long; 1 synthetic extreme ratio
    assert big["filtered"] == small["filtered"] == {
        "input_pairs": 172, "kept_pairs": 148, "empty": 1, "copy": 0, "numbers": 0, "language": 0, "duplicate": 21,
        "too_long": 1, "length_ratio": 1}
    assert big["splits"] == small["splits"] and big_cols == small_cols and big_model == small_model


def test_line_count_mismatch_in_a_streamed_training_split(corpus, tmp_path, monkeypatch):
    import data_prep.prepare as module

    monkeypatch.setattr(module, "CHUNK", 16)  # the mismatch shows only after several chunks
    with gzip.open(corpus / "train.de.gz", "at", encoding="utf-8") as f:
        f.write("ein extra satz\nnoch einer\n")
    message = _bad(tmp_path, corpus, "has 400 lines but")
    assert "train.de.gz has 402" in message


@pytest.mark.slow
def test_sentencepiece_sample_is_the_same_in_every_process(tmp_path):
    """A sample smaller than the corpus: the same model from two separate processes (SentencePiece's own
    sampling differs between processes), and a different one from the whole corpus."""
    folder = tmp_path / "c"
    folder.mkdir()
    write_split(folder, "train", synthetic_pairs(600, seed=8, min_words=4, max_words=12))
    write_split(folder, "val", synthetic_pairs(10, seed=9))
    models = []
    for name, sample in (("a", 150), ("b", 150), ("all", 0)):
        run = tmp_path / name
        subprocess.run([sys.executable, "-m", "mt", "prepare", "--run", str(run), "--data-dir", str(folder), "--src",
                        "en", "--tgt", "de", "data.vocab_size=80", "data.byte_fallback=false", f"data.spm_sample_size={sample}"],
                       check=True, capture_output=True)
        models.append((run / "data" / "spm.model").read_bytes())
    assert models[0] == models[1]
    assert models[0] != models[2]


@pytest.mark.parametrize("name", ["../../secret.txt", "/etc/passwd", "sub/spm.model", "..", "", 7, "a\\b.model"])
def test_tokenizer_names_in_meta_json_stay_inside_the_run(corpus, tmp_path, name):
    """meta.json comes from a run folder someone may have crafted: its tokenizer names are joined to RUN/data, so
    `mt export` would read (and ship) any file a name leads to."""
    run = RunDir.of(tmp_path / "run")
    prepare(run, small_cfg(), data_dir=str(corpus))
    meta = run.meta()
    meta["tgt_model"] = name
    run.meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(MTError, match=r"meta.json: 'tgt_model' must be a file name inside"):
        run.tokenizer()


def test_a_run_prepared_in_another_layout_is_a_one_line_error(corpus, tmp_path):
    """Prepared data of another layout (meta.json without its data settings, no SPLIT.arrow files) is refused
    with one line that says to prepare again, never read half-way."""
    run = RunDir.of(tmp_path / "run")
    prepare(run, small_cfg(), data_dir=str(corpus))
    meta = run.meta()
    del meta["data"]
    run.meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(MTError, match=r"meta.json has no 'data'.*re-run `mt prepare`"):
        run.meta()
    for f in run.encoded_dir.glob("*.arrow"):
        f.unlink()
    with pytest.raises(MTError, match=r"holds no encoded splits \(SPLIT.arrow\); re-run `mt prepare`"):
        run.encoded()


MULTI30K = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"


@pytest.mark.slow
@pytest.mark.skipif(not (MULTI30K / "train.en.gz").is_file(), reason="Multi30k not in ../shared/data")
def test_multi30k_streamed_equals_the_in_memory_definition(tmp_path):
    """The streaming prepare gives what the whole-corpus-in-lists definition gives on Multi30k: the same filter
    counts (28,994 of 29,000 pairs kept), the same SentencePiece pieces and the same encoded training pairs."""
    import sentencepiece as spm

    from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
    from mt.text import read_lines

    run = RunDir.of(tmp_path / "run")
    stats = prepare(run, apply_overrides(Config(), []), data_dir=str(MULTI30K))
    assert stats["filtered"] == {"input_pairs": 29000, "kept_pairs": 28994, "empty": 0, "copy": 0, "numbers": 0,
                                 "language": 0, "duplicate": 3, "too_long": 0, "length_ratio": 3}

    src, tgt, seen = [], [], set()
    for s, t in zip(*(map(normalize, read_lines(MULTI30K / f"train.{lang}.gz")[0]) for lang in ("en", "de"))):
        if s and t and (s, t) not in seen:
            seen.add((s, t))
            src.append(s)
            tgt.append(t)
    model = tmp_path / "reference"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(src + tgt), model_prefix=str(model), vocab_size=8000, model_type="unigram",
        character_coverage=1.0, byte_fallback=True, pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        pad_piece="<pad>",
        unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>", input_sentence_size=0, num_threads=os.cpu_count() or 1,
        max_sentence_length=1 << 16, minloglevel=2)
    reference = spm.SentencePieceProcessor(model_file=f"{model}.model")
    ours = run.tokenizer().src
    pieces = [(ours.id_to_piece(i), ours.get_score(i)) for i in range(ours.get_piece_size())]
    assert pieces == [(reference.id_to_piece(i), reference.get_score(i)) for i in range(reference.get_piece_size())]

    src_ids, tgt_ids = reference.encode(src), reference.encode(tgt)
    kept = [i for i, (s, t) in enumerate(zip(src_ids, tgt_ids))
            if max(len(s), len(t)) <= 100 and not (max(len(s), len(t)) >= 10
                                                   and max(len(s), len(t)) > 3.0 * max(min(len(s), len(t)), 1))]
    train = run.encoded()["train"]
    assert train["src"][:] == [src[i] for i in kept]
    assert train["src_ids"][:] == [src_ids[i] for i in kept] and train["tgt_ids"][:] == [tgt_ids[i] for i in kept]


@pytest.mark.slow
def test_wmt14_recipe_on_a_local_stand_in(monkeypatch, tmp_path, capsys):
    """The commands of configs/wmt14_en_de.yaml on a tiny stand-in for the Hub's wmt/wmt14 (a translation column,
    splits train / validation / test): prepare, then a few updates of the recipe's 2-layer model (narrowed: the
    full width costs 40 s of checkpoints and validation here and checks nothing more)."""
    def split(n, seed):
        return datasets.Dataset.from_dict({"translation": [{"de": t, "en": s} for s, t in synthetic_pairs(n, seed)]})

    _hub(monkeypatch, datasets.DatasetDict(train=split(300, 1), validation=split(20, 2), test=split(10, 3)))
    run = str(tmp_path / "wmt14")
    assert main(["prepare", "--run", run, "--hf-dataset", "wmt/wmt14", "--hf-config", "de-en", "--src", "en",
                 "--tgt", "de", "--config", "configs/wmt14_en_de.yaml", "data.vocab_size=60", "data.byte_fallback=false"]) == 0
    cfg = RunDir.of(run).config()
    assert (cfg.model.layers, cfg.model.hidden_dim, cfg.train.validate_every) == (2, 1000, 5000)
    assert main(["train", "--run", run, "train.max_epochs=1", "train.threads=1", "train.batch_tokens=6000",
                 "decode.beam=1", "model.emb_dim=32", "model.hidden_dim=64"]) == 0  # two updates, 2 layers, narrow
    assert RunDir.of(run).config().model.layers == 2
    assert "stopped (max_epochs) at step" in capsys.readouterr().out


@pytest.mark.parametrize("killed", ["building", "between the renames", "after the swap"])
def test_a_prepare_killed_at_any_step_is_recovered_by_the_next(corpus, tmp_path, killed, caplog):
    """What a kill leaves at each step of prepare's swap (a half-built .data.tmp-PID; RUN/data renamed away to
    .data.old-PID with the new data not yet in place; the old copy not yet deleted): the next prepare restores or
    removes it, and the data is whole again (the cache is reused where the data was not lost)."""
    run = RunDir.of(tmp_path / "run")
    prepare(run, small_cfg(), data_dir=str(corpus))
    meta = run.meta_path.read_bytes()
    (tmp_path / "run" / ".data.tmp-99999").mkdir()  # a build cut short
    (tmp_path / "run" / ".data.tmp-99999" / "half.arrow").write_bytes(b"x")
    if killed == "between the renames":
        run.data_dir.rename(tmp_path / "run" / ".data.old-99998")
    elif killed == "after the swap":
        shutil.copytree(run.data_dir, tmp_path / "run" / ".data.old-99998")
    with caplog.at_level(logging.INFO, logger="mt"):
        prepare(run, small_cfg(), data_dir=str(corpus))
    assert run.meta_path.read_bytes() == meta and len(run.encoded()["train"]) > 0
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".data.")]
    assert "reusing the cache" in caplog.text  # nothing was lost, nothing rebuilt
