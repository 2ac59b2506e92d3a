"""eval.experiments.sweep: one run per setting from the base run's corpus, a table of validation BLEU, resumable."""

from __future__ import annotations

import json

from eval.experiments.sweep import main, setting_name
from mt.files import read_jsonl


def test_setting_names_are_readable_folder_names():
    assert setting_name([]) == "baseline"
    assert setting_name(["model.dropout=0.4", "train.lr=1e-3"]) == "dropout-0.4_lr-1e-3"
    assert setting_name(["data.spm_model_type=bpe"]) == "spm-model-type-bpe"


def test_sweep_trains_each_setting_and_tabulates_validation_bleu(trained_run, tmp_path, capfd):
    out = tmp_path / "sweep"
    argv = ["--base", str(trained_run), "--out", str(out), "--minutes", "0", "--common", "train.max_epochs=1",
            "model.dropout=0.2", "data.vocab_size=50"]
    assert main(argv) == 0
    rows = json.loads((out / "sweep.json").read_text())
    assert [r["setting"] for r in rows] == ["baseline", "model.dropout=0.2", "data.vocab_size=50"]
    for row, folder in zip(rows, ["baseline", "dropout-0.2", "vocab-size-50"]):
        (logged,) = read_jsonl(out / folder / "train_log.jsonl", "valid")  # the table is that run's own validation
        assert row["epochs"] == 1 and len(row["curve"]) == 1 and row["val_bleu"] == round(logged["val_bleu"], 2)
        assert row["by_epoch"] == [row["val_bleu"]]  # one epoch: its end is the only validation
        assert row["tokens_per_s"] > 0 and row["updates"] > 0 and not row.get("failed")
    # each setting really ran with its own overrides: its own tokenizer, its own dropout
    assert json.loads((out / "vocab-size-50" / "data" / "meta.json").read_text())["tgt_vocab_size"] == 50
    assert "dropout: 0.2" in (out / "dropout-0.2" / "config.yaml").read_text()
    table = (out / "sweep.md").read_text()
    assert table.count("\n| ") == 5 and "**" in table  # header, rule, three rows; the best one in bold
    assert (out / "sweep.png").stat().st_size > 0

    # re-running finds every budget spent: nothing trains again, the same table comes out
    capfd.readouterr()
    assert main(argv) == 0
    assert capfd.readouterr().out.count("nothing left to train") == 3
    assert json.loads((out / "sweep.json").read_text()) == rows


def test_sweep_rejects_a_bad_override_before_training_anything(trained_run, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["--base", str(trained_run), "--out", str(out), "model.dropuot=0.2"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'model.dropuot'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
