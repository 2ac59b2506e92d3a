"""Your data, your model: sampled translations for back-translation, a reused tokenizer, a translator started from
another translator's weights, synthetic pairs added to a prepared run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mt.cli import main
from mt.decode.sampling import Sampling
from mt.decode.translator import Translator
from mt.errors import MTError
from mt.run import RunDir
from tests.conftest import TINY_OVERRIDES, synthetic_pairs, write_split

LINES = [src for src, _ in synthetic_pairs(24, seed=7)]


@pytest.fixture(scope="module")
def translator(trained_run) -> Translator:
    return Translator.from_run(trained_run, threads=1)


def test_sampling_is_reproducible_by_seed_whatever_the_batching(translator):
    hot = Sampling(temperature=3.0, seed=5)
    first = [t.text for t in translator.translate_batch(LINES, sampling=hot)]
    translator.set_decoding(["decode.batch_tokens=7"])  # one sentence per batch
    try:
        again = [t.text for t in translator.translate_batch(LINES, sampling=hot)]
        one_by_one = [translator.translate_batch([line], sampling=hot, first_line=i)[0].text for i, line in enumerate(LINES)]
    finally:
        translator.set_decoding(["decode.batch_tokens=4000"])
    other_seed = [t.text for t in translator.translate_batch(LINES, sampling=Sampling(temperature=3.0, seed=6))]
    assert first == again == one_by_one
    assert sum(a != b for a, b in zip(first, other_seed)) >= 3
    shifted = [t.text for t in translator.translate_batch(LINES, sampling=hot, first_line=100)]
    assert shifted != first  # a line's random stream is named by its position in the input


def test_sampling_without_randomness_is_greedy_search(translator):
    greedy = [t.text for t in translator.translate_batch(LINES, beam=1)]
    assert [t.text for t in translator.translate_batch(LINES, sampling=Sampling(temperature=0))] == greedy
    assert [t.text for t in translator.translate_batch(LINES, sampling=Sampling(temperature=5.0, top_k=1))] == greedy


def test_sample_scores_are_the_models_log_probabilities(translator):
    sampled = translator.translate_batch(LINES[:6], sampling=Sampling(temperature=2.0, seed=3))
    greedy = translator.translate_batch(LINES[:6], beam=1)
    assert all(s.score <= 0 for s in sampled)
    assert sum(s.score for s in sampled) < sum(g.score for g in greedy)  # hot samples are less likely


def test_sample_cli_is_a_stream_with_its_own_checks(trained_run, tmp_path, capsys):
    (tmp_path / "in").write_text("".join(line + "\n" for line in LINES))
    args = ["translate", "--run", str(trained_run), "--input", str(tmp_path / "in"), "--sample", "--seed", "4",
            "--temperature", "2.5", "--top-k", "5"]
    assert main([*args, "--chunk-lines", "1"]) == 0
    by_line = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == by_line and len(by_line.splitlines()) == len(LINES)
    assert main(["translate", "--run", str(trained_run), "--input", str(tmp_path / "in"), "--top-k", "5"]) == 2
    assert "apply to --sample only" in capsys.readouterr().err
    assert main([*args, "--beam", "4"]) == 2
    assert "drop --beam" in capsys.readouterr().err
    assert main([*args[:-2], "--top-k", "-1"]) == 2
    assert "must be >= 0" in capsys.readouterr().err


def _prepare(run: Path, corpus: Path, *args: str, src: str = "en", tgt: str = "de") -> int:
    """mt prepare of the tiny config; ``args``: options first, then key=value overrides."""
    return main(["prepare", "--run", str(run), "--data-dir", str(corpus), "--src", src, "--tgt", tgt,
                 "--config", "configs/tiny.yaml", *args[:2], *TINY_OVERRIDES, *args[2:]] if args[:1] == ("--tokenizer-from",)
                else ["prepare", "--run", str(run), "--data-dir", str(corpus), "--src", src, "--tgt", tgt,
                      "--config", "configs/tiny.yaml", *TINY_OVERRIDES, *args])


def _corpus(folder: Path, seed: int, src: str = "en", tgt: str = "de", pairs: list | None = None) -> Path:
    folder.mkdir()
    write_split(folder, "train", pairs or synthetic_pairs(300, seed=seed), src, tgt)
    write_split(folder, "val", synthetic_pairs(20, seed=seed + 1), src, tgt)
    return folder


def test_a_reused_tokenizer_is_byte_identical(prepared_tiny, tmp_path, capsys):
    corpus = _corpus(tmp_path / "other", seed=40)
    run = tmp_path / "new"
    assert _prepare(run, corpus, "--tokenizer-from", str(prepared_tiny)) == 0
    meta, parent = RunDir.of(run).meta(), RunDir.of(prepared_tiny).meta()
    assert (run / "data" / meta["src_model"]).read_bytes() == (prepared_tiny / "data" / parent["src_model"]).read_bytes()
    assert meta["tokenizer_sha256"] == parent["tokenizer_sha256"]
    stats = json.loads((run / "data" / "stats.json").read_text())
    assert stats["tokenizer"]["reused_from"] == str(prepared_tiny.resolve())
    tok = RunDir.of(run).tokenizer()
    first = RunDir.of(run).encoded()["val"][0]
    assert first["src_ids"] == tok.encode_src([first["src"]])[0]
    # the joint/separate choice must fit: one line naming the fix
    capsys.readouterr()
    assert _prepare(tmp_path / "separate", corpus, "--tokenizer-from", str(prepared_tiny), "data.joint_vocab=false",
                    "model.share_embeddings=false") == 2
    assert "set data.joint_vocab=true" in capsys.readouterr().err


def test_separate_tokenizers_serve_the_reverse_pair_and_no_other_language(tmp_path, capsys):
    corpus = _corpus(tmp_path / "corpus", seed=50)
    forward = tmp_path / "en-de"
    assert _prepare(forward, corpus, "data.joint_vocab=false", "model.share_embeddings=false") == 0
    reverse = tmp_path / "de-en"
    assert _prepare(reverse, corpus, "--tokenizer-from", str(forward), src="de", tgt="en") == 0
    meta = RunDir.of(reverse).meta()
    assert (meta["src_model"], meta["tgt_model"]) == ("spm.de.model", "spm.en.model")
    assert (reverse / "data" / "spm.de.model").read_bytes() == (forward / "data" / "spm.de.model").read_bytes()
    capsys.readouterr()
    fr = _corpus(tmp_path / "fr", seed=50, tgt="fr")
    assert _prepare(tmp_path / "en-fr", fr, "--tokenizer-from", str(forward), tgt="fr") == 2
    assert capsys.readouterr().err.strip().endswith("none for fr")


def test_a_tokenizer_for_another_script_is_refused(prepared_tiny, tmp_path, capsys, caplog):
    greek = [(src, "".join(chr(0x3b1 + (ord(c) % 24)) if c != " " else c for c in tgt))
             for src, tgt in synthetic_pairs(300, seed=60)]
    corpus = _corpus(tmp_path / "greek", seed=60, tgt="el", pairs=greek)
    assert _prepare(tmp_path / "en-el", corpus, "--tokenizer-from", str(prepared_tiny), tgt="el") == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: --tokenizer-from") and "target subwords are unknown to its tokenizer" in last
    # with byte fallback nothing is unknown: the new script is encoded as bytes, with a warning saying so
    bytes_run = tmp_path / "en-de-bytes"
    assert _prepare(bytes_run, _corpus(tmp_path / "de", seed=61), "data.byte_fallback=true", "data.vocab_size=300") == 0
    capsys.readouterr()
    assert _prepare(tmp_path / "en-el-bytes", corpus, "--tokenizer-from", str(bytes_run), tgt="el") == 0
    assert "target subwords are byte pieces" in caplog.text


def _val_loss(run: Path, model) -> float:
    from mt.data.batching import collate, make_batches
    from mt.model.loss import SummedLoss

    val = RunDir.of(run).encoded()["val"]
    src, tgt = val["src_ids"], val["tgt_ids"]
    batches = [collate([src[i] for i in idx], [tgt[i] for i in idx], idx)
               for idx in make_batches([len(s) for s in src], [len(t) for t in tgt], 400)]
    return SummedLoss(model).validation_loss(batches)[0]


def test_fine_tuning_starts_from_the_parents_weights(trained_run, prepared_tiny, tmp_path, capsys):
    from mt.checkpoint import load_checkpoint
    from mt.config import apply_overrides
    from mt.model import build_model
    from mt.recipes.transfer import init_from_translator

    child = tmp_path / "child"
    assert _prepare(child, _corpus(tmp_path / "domain", seed=70), "--tokenizer-from", str(prepared_tiny)) == 0
    meta, cfg = RunDir.of(child).meta(), RunDir.of(child).config()
    fresh = build_model(cfg.model, meta["src_vocab_size"], meta["tgt_vocab_size"])
    fresh_loss = _val_loss(child, fresh)
    used = init_from_translator(fresh, cfg.model, trained_run, meta["tokenizer_sha256"], child / "data")
    parent = build_model(cfg.model, meta["src_vocab_size"], meta["tgt_vocab_size"])
    parent.load_state_dict(load_checkpoint(used)["model"])
    assert _val_loss(child, fresh) == pytest.approx(_val_loss(child, parent), abs=1e-5)
    assert _val_loss(child, fresh) < 0.5 * fresh_loss
    # end to end: a fresh optimizer and progress, then resuming keeps working
    assert main(["train", "--run", str(child), *TINY_OVERRIDES, "train.max_epochs=1", "--init-from",
                 str(trained_run)]) == 0
    assert "initialised all" in capsys.readouterr().out
    assert load_checkpoint(child / "checkpoints" / "last.pt")["progress"]["epoch"] == 1
    assert main(["train", "--run", str(child), "train.max_epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "initialised" not in out and load_checkpoint(child / "checkpoints" / "last.pt")["progress"]["epoch"] == 2
    # another tokenizer or another shape: one line naming both
    other = tmp_path / "other"
    assert _prepare(other, _corpus(tmp_path / "c2", seed=80)) == 0
    with pytest.raises(MTError, match="was trained with tokenizer .* but .* has"):
        init_from_translator(fresh, cfg.model, trained_run, RunDir.of(other).meta()["tokenizer_sha256"], other)
    wide = apply_overrides(cfg, ["model.hidden_dim=96"]).model
    with pytest.raises(MTError, match="model.hidden_dim differ.*model.hidden_dim=64"):
        init_from_translator(build_model(wide, meta["src_vocab_size"], meta["tgt_vocab_size"]), wide, trained_run,
                             meta["tokenizer_sha256"], child / "data")


def test_back_translations_are_cleaned_tagged_and_counted_apart(prepared_tiny, tmp_path, capsys):
    from mt.data.tokenizer import BOS_ID

    corpus = _corpus(tmp_path / "corpus", seed=90)
    genuine = synthetic_pairs(300, seed=90)
    synthetic = synthetic_pairs(50, seed=91) + [("", "der hund"), genuine[0]]  # an empty side, a genuine pair
    (tmp_path / "bt.en").write_text("".join(s + "\n" for s, _ in synthetic))
    (tmp_path / "bt.de").write_text("".join(t + "\n" for _, t in synthetic))
    run = tmp_path / "bt"
    assert main(["prepare", "--run", str(run), "--data-dir", str(corpus), "--src", "en", "--tgt", "de",
                 "--config", "configs/tiny.yaml", "--tokenizer-from", str(prepared_tiny), "--back-translations",
                 str(tmp_path / "bt.en"), str(tmp_path / "bt.de"), "--tag-back-translations", *TINY_OVERRIDES]) == 0
    assert "back-translations (tagged): kept" in capsys.readouterr().out
    stats = json.loads((run / "data" / "stats.json").read_text())
    bt, genuine_kept = stats["back_translations"], stats["filtered"]["kept_pairs"]
    assert (bt["input_pairs"], bt["empty"], bt["tagged"]) == (52, 1, True) and bt["duplicate"] >= 1
    assert bt["kept_pairs"] + sum(bt[k] for k in ("empty", "duplicate", "too_long", "length_ratio")) == 52
    assert genuine_kept + bt["kept_pairs"] == stats["splits"]["train"]["sentences"]
    train = RunDir.of(run).encoded()["train"]
    starts = [ids[0] == BOS_ID for ids in train["src_ids"]]
    assert starts == [False] * genuine_kept + [True] * bt["kept_pairs"]
    assert main(["train", "--run", str(run), *TINY_OVERRIDES, "train.max_epochs=1"]) == 0  # trains as any run
    assert main(["prepare", "--run", str(tmp_path / "x"), "--data-dir", str(corpus), "--src", "en", "--tgt", "de",
                 "--tag-back-translations"]) == 2
    assert "give them" in capsys.readouterr().err


def test_unseen_characters_never_become_unknown_or_print_it(trained_run, tmp_path):
    from mt.data.tokenizer import UNK_ID, train_sentencepiece

    names = "Zoë, Łódź, Ørjan, São Paulo, 東京 🐶"
    text = [s for pair in synthetic_pairs(300, seed=95) for s in pair]
    train_sentencepiece(text, tmp_path / "bytes.model", 300, byte_fallback=True)
    tok = Translator.from_run(trained_run).tokenizer.__class__(tmp_path / "bytes.model", tmp_path / "bytes.model")
    ids = tok.encode_src([names])[0]
    assert UNK_ID not in ids and tok.decode_tgt([ids]) == [names]
    # byte pieces can spell line breaks and control characters: an output line never holds one
    newline, tab, escape = (tok.tgt.piece_to_id(f"<0x{b:02X}>") for b in (0x0A, 0x09, 0x1B))
    dog = tok.encode_src(["the dog"])[0]
    assert tok.decode_tgt([[*dog, newline, *dog], [tab, *dog, escape, escape]]) == ["the dog the dog", "the dog"]
    # a tokenizer without byte fallback maps them to <unk>; the translation never shows it
    translator = Translator.from_run(trained_run)
    assert UNK_ID in translator.tokenizer.encode_src([names])[0]
    assert all("⁇" not in t.text for t in translator.translate_batch([names, f"the dog {names} runs"], beam=1))
    assert translator.tokenizer.decode_tgt([[UNK_ID, 5, UNK_ID]]) == [translator.tokenizer.tgt.decode([5])]
