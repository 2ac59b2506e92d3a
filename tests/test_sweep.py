"""experiments.sweep: one run per setting from the base run's corpus, a table of validation BLEU, resumable;
experiments.compare: finished runs side by side."""

from __future__ import annotations

import json
import shutil

from experiments import compare, sweep
from experiments.sweep import main, setting_name
from mt.cli import main as mt_main
from mt.config import apply_overrides, save_config
from mt.files import read_jsonl


def test_setting_names_are_readable_folder_names():
    assert setting_name([]) == "baseline"
    assert setting_name(["model.dropout=0.4", "train.lr=1e-3"]) == "dropout-0.4_lr-1e-3"
    assert setting_name(["data.spm_model_type=bpe"]) == "spm-model-type-bpe"


def test_sweep_trains_each_setting_and_tabulates_validation_bleu(trained_run, tmp_path, capfd, monkeypatch):
    out = tmp_path / "sweep"
    argv = ["--base", str(trained_run), "--out", str(out), "--minutes", "0", "--common", "train.max_epochs=1",
            "model.dropout=0.2 data.vocab_size=50"]
    # the same `mt` commands, run in this process: each child process costs seconds of start-up (the child
    # process itself is tested below)
    monkeypatch.setattr(sweep, "_mt", lambda *args: print("+ mt " + " ".join(args)) or mt_main(list(args)))
    assert main(argv) == 0
    rows = json.loads((out / "sweep.json").read_text())
    assert [r["setting"] for r in rows] == ["baseline", "model.dropout=0.2 data.vocab_size=50"]
    for row, folder in zip(rows, ["baseline", "dropout-0.2_vocab-size-50"]):
        (logged,) = read_jsonl(out / folder / "train_log.jsonl", "valid")  # the table is that run's own validation
        assert row["epochs"] == 1 and len(row["curve"]) == 1 and row["val_bleu"] == round(logged["val_bleu"], 2)
        assert row["by_epoch"] == [row["val_bleu"]]  # one epoch: its end is the only validation
        assert row["best_epoch"] == "1"
        assert row["tokens_per_s"] > 0 and row["updates"] > 0 and not row.get("failed")
    # the setting really ran with its own overrides: its own tokenizer, its own dropout
    setting = out / "dropout-0.2_vocab-size-50"
    assert json.loads((setting / "data" / "meta.json").read_text())["tgt_vocab_size"] == 50
    assert "dropout: 0.2" in (setting / "config.yaml").read_text()
    # the baseline changes no data.* key: it trains on a copy of the base run's prepared data, not a new one
    said = capfd.readouterr().out
    assert said.count("+ mt prepare") == 1 and said.count("a copy of") == 1
    assert (out / "baseline" / "data" / "meta.json").read_bytes() == (trained_run / "data" / "meta.json").read_bytes()
    assert not (out / "baseline" / ".data.partial").exists()
    table = (out / "sweep.md").read_text()
    assert table.count("\n| ") == 4 and "**" in table  # header, rule, two rows; the best one in bold
    assert (out / "sweep.png").stat().st_size > 0

    # re-running finds every budget spent: nothing trains again, the same table comes out
    capfd.readouterr()
    assert main(argv) == 0
    assert capfd.readouterr().out.count("nothing left to train") == 2
    assert json.loads((out / "sweep.json").read_text()) == rows


def test_each_setting_runs_in_a_child_process_whose_exit_status_is_kept(tmp_path, capfd):
    """A setting that fails (here: a run folder with nothing prepared) is that child's exit status, not the sweep's
    crash."""
    assert sweep._mt("train", "--run", str(tmp_path / "nothing")) == 2
    out, err = capfd.readouterr()
    assert out.startswith("+ mt train --run") and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_sweep_rejects_a_bad_override_before_training_anything(trained_run, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["--base", str(trained_run), "--out", str(out), "model.dropuot=0.2"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'model.dropuot'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_compare_tabulates_runs_by_their_config_differences(trained_run, tmp_path, capsys):
    """Each run is named by how its config differs from the first; the numbers are each run's own log and
    `mt eval --split val` report; a folder that is not a trained run is a one-line error."""
    reference, other = tmp_path / "reference", tmp_path / "other"
    for copy in (reference, other):
        shutil.copytree(trained_run, copy)
        shutil.rmtree(copy / "eval", ignore_errors=True)
    cfg = apply_overrides(compare.RunDir.of(other).config(), ["train.seed=7", "model.dropout=0.3"])
    save_config(cfg, other / "config.yaml")
    assert mt_main(["eval", "--run", str(other), "--split", "val"]) == 0
    report = json.loads((other / "eval" / "val.json").read_text())
    capsys.readouterr()

    valid = read_jsonl(other / "train_log.jsonl", "valid")  # tiny.yaml: one validation per epoch, at its end
    best = max(valid, key=lambda r: r["val_bleu"])
    mid_epoch = {**valid[-1], "step": valid[-1]["step"] + 1, "val_bleu": 99.0}  # as the budget's last validation
    with open(other / "train_log.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps(mid_epoch) + "\n")

    assert compare.main([str(reference), str(other), "--out", str(tmp_path / "out")]) == 0
    rows = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert [r["setting"] for r in rows] == ["reference", "model.dropout=0.3 train.seed=7"]
    assert rows[0]["val_bleu"] == round(best["val_bleu"], 2) and rows[0]["best_epoch"] == str(best["epoch"])
    assert rows[1]["val_bleu"] == 99.0 and rows[1]["best_epoch"] == f"{valid[-1]['epoch']}+"  # after N epochs
    assert rows[1]["by_epoch"] == [round(r["val_bleu"], 2) for r in valid]  # epoch ends only
    assert rows[0]["beam_val"] is None
    assert rows[1]["beam_val"] == {"beam": report["beam"], "bleu": report["bleu"], "chrf": report["chrf"]}
    tables = capsys.readouterr().out
    assert tables == (tmp_path / "out" / "compare.md").read_text()
    assert "| epoch | reference | other |" in tables
    assert f"| behind the reference at | – | 0 of {len(valid)} |" in tables  # the same log
    assert (tmp_path / "out" / "compare.png").stat().st_size > 0

    assert compare.main([str(reference), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "has no train_log.jsonl" in err and len(err.strip().splitlines()) == 1
