"""Language-model pre-training, weight transfer into the translator, and generation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES, synthetic_pairs

from mt.checkpoint import save_checkpoint
from mt.cli import main
from mt.config import Config, apply_overrides, config_to_dict
from mt.errors import MTError
from mt.files import read_jsonl, sha256_file
from mt.model import build_model
from mt.model.lm import build_language_model
from mt.recipes.transfer import init_from_language_model

LM_OVERRIDES = ["train.max_minutes=0", "train.lr=0.01", "train.log_every=5", "train.threads=1", "train.patience=50"]


@pytest.fixture(scope="module")
def prepared(prepared_tiny) -> Path:
    """A prepared (not trained) synthetic run: the session's tiny corpus (600 training pairs)."""
    return prepared_tiny


@pytest.fixture(scope="module")
def tgt_lm(prepared: Path, tmp_path_factory) -> Path:
    """A target-side LM trained 4 epochs on the run's German side plus an extra monolingual file."""
    root = tmp_path_factory.mktemp("tgt_lm")
    mono = root / "mono.de"
    mono.write_text("".join(p[1] + "\n" for p in synthetic_pairs(300, seed=7)), encoding="utf-8")
    lm_run = root / "lm"
    assert main(["pretrain", "--run", str(lm_run), "--from-run", str(prepared), "--side", "tgt",
                 "--text", str(mono), "train.max_epochs=4", *LM_OVERRIDES]) == 0
    return lm_run


def _valid_records(lm_run: Path) -> list[dict]:
    return read_jsonl(lm_run / "train_log.jsonl", "valid")


def test_lm_learns_the_synthetic_language(tgt_lm: Path):
    valid, train = _valid_records(tgt_lm), read_jsonl(tgt_lm / "train_log.jsonl", "train")
    assert len(valid) == 4
    assert train[-1]["loss"] < 0.5 * train[0]["loss"] and valid[-1]["val_ppl"] < valid[0]["val_ppl"]
    assert valid[-1]["val_ppl"] < 15  # 20 words, uniform would be about 20+ per word
    meta = json.loads((tgt_lm / "lm.json").read_text())
    assert meta["side"] == "tgt" and meta["train_sentences"] == 900  # run's 600 + 300 extra lines
    assert (tgt_lm / "checkpoints" / "best.pt").is_file() and (tgt_lm / "plots" / "curves.png").is_file()


def test_lm_resumes_and_continues(tgt_lm: Path, capsys):
    assert main(["pretrain", "--run", str(tgt_lm), "--from-run", str(json.loads((tgt_lm / "lm.json").read_text())
                                                                      ["from_run"]),
                 "--side", "tgt", "train.max_epochs=5", *LM_OVERRIDES]) == 0
    assert "resuming from last.pt" in capsys.readouterr().out
    valid = _valid_records(tgt_lm)
    assert [r["epoch"] for r in valid] == [1, 2, 3, 4, 5]
    assert valid[-1]["step"] > valid[-2]["step"]


def test_generation_is_reproducible_with_a_seed(tgt_lm: Path, capsys):
    outputs = []
    for seed in (3, 3, 4):
        assert main(["generate", "--run", str(tgt_lm), "--num", "4", "--seed", str(seed), "--top-k", "5"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] != outputs[2]
    assert len(outputs[0].splitlines()) == 4 and all(line.strip() for line in outputs[0].splitlines())
    assert main(["generate", "--run", str(tgt_lm), "--temperature", "0", "--prompt", "der hund"]) == 0
    assert capsys.readouterr().out.startswith("der hund")


def _tiny_model_config(**changes) -> Config:
    cfg = apply_overrides(Config(), ["model.emb_dim=10", "model.hidden_dim=14", "model.dropout=0.0",
                                     "model.tie_embeddings=false", "model.share_embeddings=false"])
    for key, value in changes.items():
        setattr(cfg.model, key, value)
    return cfg


def _save_lm(tmp_path: Path, cfg: Config, side: str, vocab: int, tokenizer: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(5)
    lm = build_language_model(cfg.model, vocab, side)
    meta = {"side": side, "tokenizer": "tokenizer.model", "spm_sha256": sha256_file(tokenizer),
            "vocab_size": vocab}
    path = tmp_path / f"{side}-lm.pt"
    save_checkpoint({"model": lm.state_dict(), "config": config_to_dict(cfg), "lm": meta}, path)
    return path, lm


def _lm_and_translator(tmp_path: Path, side: str, layers: int):
    """A saved LM of ``side`` (vocabularies 19 src / 23 tgt), a fresh translator and a copy of its weights."""
    tok = tmp_path / "spm.model"
    tok.write_bytes(b"pretend tokenizer")
    cfg = _tiny_model_config(layers=layers)
    path, lm = _save_lm(tmp_path, cfg, side, 23 if side == "tgt" else 19, tok)
    model = build_model(cfg.model, 19, 23)
    return tok, path, lm, model, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("layers", [1, 2])
def test_decoder_gets_exactly_the_lm_tensors(tmp_path: Path, layers: int):
    tok, path, lm, model, before = _lm_and_translator(tmp_path, "tgt", layers)
    copied = init_from_language_model(model, path, "tgt", tok)
    after, lm_state = model.state_dict(), lm.state_dict()
    assert torch.equal(after["decoder.embed.weight"], lm_state["embed.weight"])
    assert torch.equal(after["decoder.output.weight"], lm_state["output.weight"])
    for k in range(layers):
        for name in ("weight_hh", "bias_ih", "bias_hh"):
            assert torch.equal(after[f"decoder.rnn.{name}_l{k}"], lm_state[f"rnn.{name}_l{k}"])
    w = after["decoder.rnn.weight_ih_l0"]  # (4H, E + H): embedding columns from the LM, feed columns untouched
    assert torch.equal(w[:, :10], lm_state["rnn.weight_ih_l0"])
    assert torch.equal(w[:, 10:], before["decoder.rnn.weight_ih_l0"][:, 10:])
    if layers == 2:
        assert torch.equal(after["decoder.rnn.weight_ih_l1"], lm_state["rnn.weight_ih_l1"])
    untouched = [k for k in after if not k.startswith(("decoder.embed", "decoder.rnn", "decoder.output"))]
    assert untouched and all(torch.equal(after[k], before[k]) for k in untouched)
    assert len(copied) == 2 + 4 * layers


@pytest.mark.parametrize("layers", [1, 2])
def test_encoder_forward_direction_gets_the_lm_tensors(tmp_path: Path, layers: int):
    tok, path, lm, model, before = _lm_and_translator(tmp_path, "src", layers)
    init_from_language_model(model, path, "src", tok)
    after, lm_state = model.state_dict(), lm.state_dict()
    assert lm_state["rnn.weight_hh_l0"].shape == (28, 7)  # one direction: H/2 = 7
    assert torch.equal(after["encoder.embed.weight"], lm_state["embed.weight"])
    for k in range(layers):
        assert torch.equal(after[f"encoder.rnn.weight_hh_l{k}"], lm_state[f"rnn.weight_hh_l{k}"])
        assert torch.equal(after[f"encoder.rnn.weight_hh_l{k}_reverse"], before[f"encoder.rnn.weight_hh_l{k}_reverse"])
    if layers == 2:  # layer 1 reads [forward; backward]: forward columns from the LM
        assert torch.equal(after["encoder.rnn.weight_ih_l1"][:, :7], lm_state["rnn.weight_ih_l1"])
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith(("decoder", "bridge")))


def test_tied_decoder_gets_the_lm_embeddings_and_readout(tmp_path: Path):
    """Tied embeddings with E != H: the LM's shared (V, E) matrix and its readout H -> E reach the decoder,
    which keeps its output layer tied; an untied LM for a tied translator is a clear error."""
    tok = tmp_path / "spm.model"
    tok.write_bytes(b"pretend tokenizer")
    cfg = _tiny_model_config(tie_embeddings=True)
    path, lm = _save_lm(tmp_path, cfg, "tgt", 23, tok)
    model = build_model(cfg.model, 19, 23)
    copied = init_from_language_model(model, path, "tgt", tok)
    assert "decoder.readout.weight" in copied
    assert torch.equal(model.decoder.readout.weight, lm.readout.weight)
    assert torch.equal(model.decoder.embed.weight, lm.embed.weight)
    assert model.decoder.output.weight is model.decoder.embed.weight
    untied_path, _ = _save_lm(tmp_path, _tiny_model_config(), "tgt", 23, tok)
    with pytest.raises(MTError, match=r"output\.weight has shape \(23, 14\) but decoder\.output\.weight has \(23, 10\)"):
        init_from_language_model(build_model(cfg.model, 19, 23), untied_path, "tgt", tok)


def test_mismatches_are_clear_errors(tmp_path: Path):
    tok = tmp_path / "spm.model"
    tok.write_bytes(b"pretend tokenizer")
    path, _ = _save_lm(tmp_path, _tiny_model_config(emb_dim=12), "tgt", 23, tok)
    model = build_model(_tiny_model_config().model, 19, 23)
    with pytest.raises(MTError, match=r"embed\.weight has shape \(23, 12\) but decoder\.embed\.weight has \(23, 10\)"):
        init_from_language_model(model, path, "tgt", tok)
    with pytest.raises(MTError, match="tgt-side language model; this needs a src-side one"):
        init_from_language_model(model, path, "src", tok)
    other = tmp_path / "other.model"
    other.write_bytes(b"another tokenizer")
    with pytest.raises(MTError, match="another tokenizer"):
        init_from_language_model(model, path, "tgt", other)
    path2, _ = _save_lm(tmp_path, _tiny_model_config(layers=2), "tgt", 23, tok)
    with pytest.raises(MTError, match="2 recurrent layer"):
        init_from_language_model(model, path2, "tgt", tok)


def test_translator_trains_from_pretrained_decoder(prepared: Path, tgt_lm: Path, tmp_path: Path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(prepared, run)
    lm_ckpt = tgt_lm / "checkpoints" / "best.pt"
    overrides = [*TINY_OVERRIDES, "train.max_epochs=1", f"model.init_decoder_from={lm_ckpt}"]
    assert main(["train", "--run", str(run), *overrides]) == 0
    # tied (the recipe): embeddings, the 4 recurrent tensors, the output layer (the embeddings) and the readout
    assert "initialised 7 decoder tensors" in capsys.readouterr().out
    # an LM of the wrong side is named in a one-line error
    run2 = tmp_path / "run2"
    shutil.copytree(prepared, run2)
    assert main(["train", "--run", str(run2), *TINY_OVERRIDES, f"model.init_encoder_from={lm_ckpt}"]) == 2
    assert "tgt-side language model; this needs a src-side one" in capsys.readouterr().err


def test_freeze_pretrained_epochs_keeps_lm_weights_then_releases_them(prepared: Path, tgt_lm: Path, tmp_path: Path):
    import shutil

    from mt.checkpoint import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(prepared, run)
    lm_state = load_checkpoint(tgt_lm / "checkpoints" / "best.pt")["model"]
    common = [*TINY_OVERRIDES, f"model.init_decoder_from={tgt_lm / 'checkpoints' / 'best.pt'}",
              "train.freeze_pretrained_epochs=1"]
    assert main(["train", "--run", str(run), *common, "train.max_epochs=1"]) == 0
    after_one = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert torch.equal(after_one["decoder.embed.weight"], lm_state["embed.weight"])
    assert torch.equal(after_one["decoder.output.weight"], lm_state["output.weight"])
    emb = lm_state["rnn.weight_ih_l0"].shape[1]
    assert torch.equal(after_one["decoder.rnn.weight_ih_l0"][:, :emb], lm_state["rnn.weight_ih_l0"])
    assert load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"] > 0  # it did train meanwhile
    assert main(["train", "--run", str(run), *common, "train.max_epochs=2"]) == 0  # resumes; epoch 2 is free
    after_two = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert not torch.equal(after_two["decoder.embed.weight"], lm_state["embed.weight"])


def _pretrain_src(lm_run: Path, prepared: Path, *extra: str) -> int:
    return main(["pretrain", "--run", str(lm_run), "--from-run", str(prepared), "--side", "src", *LM_OVERRIDES, *extra])


def test_lm_run_falls_back_from_a_damaged_last_checkpoint_to_best(prepared: Path, tmp_path: Path, capsys, caplog):
    """The LM runs the translator's loop: a cut-short last.pt is skipped for best.pt, stale temporaries go."""
    from mt.checkpoint import load_checkpoint

    lm_run = tmp_path / "lm"
    assert _pretrain_src(lm_run, prepared, "train.max_epochs=1") == 0
    ckpt = lm_run / "checkpoints"
    best_step = load_checkpoint(ckpt / "best.pt")["progress"]["step"]
    data = (ckpt / "last.pt").read_bytes()
    (ckpt / "last.pt").write_bytes(data[: len(data) // 3])
    (ckpt / ".last.pt.tmp-99999").write_bytes(b"half a checkpoint")  # what a killed write leaves behind
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="mt"):
        assert _pretrain_src(lm_run, prepared, "train.max_epochs=2") == 0
    assert "last.pt is damaged" in caplog.text and "trying the previous checkpoint" in caplog.text
    assert f"resuming from best.pt: step {best_step}" in capsys.readouterr().out
    assert load_checkpoint(ckpt / "last.pt")["progress"]["epoch"] == 2
    assert not list(ckpt.glob(".*tmp*"))


def test_lm_time_budget_keeps_room_for_its_last_validation(prepared: Path, tmp_path: Path, capsys):
    """50 s of a 60 s budget spent and a validation taking 6 s: another epoch plus its validation would overrun,
    so the LM stops at once instead of training on (what the pre-trainer did before it shared the loop)."""
    from mt.checkpoint import load_checkpoint

    lm_run = tmp_path / "lm"
    assert _pretrain_src(lm_run, prepared, "train.max_epochs=1") == 0
    last = lm_run / "checkpoints" / "last.pt"
    state = {k: v for k, v in load_checkpoint(last).items() if k != "format"}
    state["progress"].update(train_seconds=50.0, val_seconds=6.0)
    save_checkpoint(state, last)
    capsys.readouterr()
    assert _pretrain_src(lm_run, prepared, "train.max_epochs=5", "train.max_minutes=1") == 0
    out = capsys.readouterr().out
    assert "nothing left to train: this run already reached its limit (max_minutes)" in out
    assert load_checkpoint(last)["progress"]["step"] == state["progress"]["step"]


def test_shared_embeddings_count_once_among_the_pretrained_regions():
    """model.share_embeddings with a target LM: the one embedding matrix is frozen (it came from the LM), under
    one of its names, and the tied output layer is not listed again."""
    from mt.config import ModelConfig
    from mt.model import build_model
    from mt.recipes.transfer import pretrained_regions

    cfg = ModelConfig(emb_dim=8, hidden_dim=16, tie_embeddings=True, share_embeddings=True, init_decoder_from="lm.pt")
    model = build_model(cfg, 30, 30)
    regions = pretrained_regions(model, cfg)
    params = dict(model.named_parameters(remove_duplicate=False))
    embeddings = [name for name in regions if params[name] is model.decoder.embed.weight]
    assert embeddings == ["decoder.embed.weight"]
    assert len({id(params[name]) for name in regions}) == len(regions)
