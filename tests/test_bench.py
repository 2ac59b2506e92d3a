"""`make bench` on the tiny trained run: every mode prints one JSON line with sane numbers."""

from __future__ import annotations

import json

import pytest
import yaml

from bench.speed import main


def _lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_bench_training_profile_and_compare(trained_run, capsys):
    run = str(trained_run)
    assert main(["--run", run, "--what", "train", "--steps", "3", "--warmup", "1", "--profile"]) == 0
    (profiled,) = _lines(capsys)
    assert profiled["what"] == "train-profile" and profiled["tokens_per_s"] > 0 and profiled["backend"] == "fast"
    assert profiled["peak_rss_gib"] > 0 and profiled["rss_anon_gib"] > 0
    assert 0 < profiled["matmul_ms_per_step"] < profiled["profiled_ms_per_step"]
    assert "aten::mm" in profiled["top_ops_ms"] or "aten::addmm" in profiled["top_ops_ms"]
    phases = profiled["phases_ms_per_step"]  # the fast backend's named ranges (mt.profiling) all saw work
    for name in ("encoder", "decoder LSTM", "attention", "output layer + loss", "gradient clipping", "optimizer"):
        assert phases[name] > 0, name
    assert phases["python and framework"] >= 0  # operators never add up to more than the wall time

    assert main(["--run", run, "--what", "train", "--compare", "backends", "--steps", "4", "--warmup", "1"]) == 0
    (compared,) = _lines(capsys)
    assert list(compared["arms"]) == ["fast", "reference"] and compared["peak_rss_gib"] > 0
    for label, arm in compared["arms"].items():
        assert arm["backend"] == label and arm["precision"] == "fp32" and arm["tokens_per_s"] > 0
    assert compared["arms"]["fast"]["median_step_speed_vs_first"] == 1.0
    assert main(["--run", run, "--what", "train", "--precision", "both", "--steps", "2", "--warmup", "1"]) == 0
    (compared,) = _lines(capsys)
    assert {label: arm["precision"] for label, arm in compared["arms"].items()} == {"bf16": "bf16", "fp32": "fp32"}


@pytest.mark.parametrize("units, both", [("AMX", True), (None, False)])
def test_bench_times_bf16_by_default_only_where_the_machine_has_bf16_units(trained_run, capsys, monkeypatch,
                                                                            units, both):
    """Emulated bf16 is many times slower than fp32: the default (--precision auto) times bf16 beside fp32 only
    where there are bf16 units, and says so otherwise."""
    monkeypatch.setattr("bench.speed.bf16_units", lambda device: units)
    assert main(["--run", str(trained_run), "--what", "train", "--steps", "2", "--warmup", "1"]) == 0
    out, err = capsys.readouterr()
    (result,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert ("arms" in result) == both and (result["precision"] == "fp32" if not both else True)
    assert ("configured precision only" in err) == (not both)


def test_bench_decoding(trained_run, capsys):
    assert main(["--run", str(trained_run), "--what", "decode", "--split", "test_toy", "--beams", "1,2",
                 "--precision", "both"]) == 0
    results = _lines(capsys)
    assert [(r["beam"], r["precision"]) for r in results] == [(1, "bf16"), (1, "fp32"), (2, "bf16"), (2, "fp32")]
    for r in results:
        assert r["sentences"] == 30 and r["sentences_per_s"] > 0 and r["backend"] == "fast"
        assert r["bleu"] > 20 and r["peak_rss_gib"] > 0  # the toy model translates test_toy, in bf16 too

    # arms alternate round by round; the backends translate alike
    assert main(["--run", str(trained_run), "--what", "decode", "--split", "test_toy", "--beams", "2",
                 "--compare", "backends", "--precision", "config", "--rounds", "3"]) == 0
    fast, reference = _lines(capsys)
    assert (fast["arm"], fast["backend"], reference["backend"]) == ("fast", "fast", "reference")
    assert len(fast["sentences_per_s_rounds"]) == 3 and reference["identical_to_first_arm"] >= 0.95
    assert main(["--run", str(trained_run), "--what", "decode", "--split", "test_toy", "--beams", "2",
                 "--compare", "candidates", "--precision", "config"]) == 0
    approximate, exact = _lines(capsys)
    assert (approximate["candidates"], exact["candidates"]) == ("approximate", "exact")
    assert exact["identical_to_first_arm"] >= 0.95
    assert main(["--run", str(trained_run), "--compare", "candidates"]) == 2  # training: nothing to compare
    assert capsys.readouterr().err.strip() == "error: --compare candidates compares decoding only: add --what decode"


def test_scale_bench_corpus_joins_unique_pairs(tmp_path):
    """`make scale-bench`'s synthetic corpus: N pairs, each two different real pairs joined side by side, no
    pair twice, the real validation split beside it."""
    from bench.scale import synthetic_corpus

    data = tmp_path / "data"
    data.mkdir()
    for lang, word in (("en", "dog"), ("de", "Hund")):
        (data / f"train.{lang}").write_text("".join(f"{word} {i}\n" for i in range(30)), encoding="utf-8")
        (data / f"val.{lang}").write_text(f"{word} val\n", encoding="utf-8")
    synthetic_corpus(data, tmp_path / "out", "en", "de", pairs=500)
    en = (tmp_path / "out" / "train.en").read_text(encoding="utf-8").splitlines()
    de = (tmp_path / "out" / "train.de").read_text(encoding="utf-8").splitlines()
    assert len(en) == len(de) == len(set(zip(en, de))) == 500
    for s, t in zip(en, de):
        _, a, _, b = s.split()
        assert a != b and t == f"Hund {a} Hund {b}"
    assert (tmp_path / "out" / "val.de").read_text(encoding="utf-8") == "Hund val\n"


def test_precision_trajectory_trains_three_arms_on_the_same_batches(trained_run, capsys):
    import math

    from bench.precision_trajectory import main as trajectory_main
    from bench.precision_trajectory import trajectories
    from mt.run import RunDir

    losses = trajectories(RunDir.of(trained_run), 2, ["train.threads=1"], every=1)
    assert set(losses) == {"fp32", "bf16-fast", "bf16-reference"}
    for values in losses.values():
        assert len(values) == 2 and all(math.isfinite(v) for v in values)
    assert abs(losses["bf16-fast"][0] - losses["fp32"][0]) < 0.05  # the first step: same weights, same batch
    assert abs(losses["bf16-reference"][0] - losses["fp32"][0]) < 0.05
    assert trajectory_main(["--run", str(trained_run), "--steps", "1", "train.threads=1"]) == 0
    assert "bf16-fast: mean loss minus fp32's" in capsys.readouterr().out


FAKE_JOEY = """#!/usr/bin/env bash
# stands in for Joey NMT 2.3: `python -m joeynmt test CONFIG -o PREFIX` writes its source lines as the output
test=$(sed -n 's/^  test: //p' "$4")
cp "$test.en" "$6.test"
"""


def test_bench_against_a_joey_folder(trained_run, tiny_corpus, tmp_path, capsys):
    """`--joey DIR`: both toolkits decode DIR's test split as whole processes, alternating; each output scored
    against the same references (here a stand-in for Joey NMT that copies the source)."""
    joey = tmp_path / "joey"
    (joey / "venv" / "bin").mkdir(parents=True)
    (joey / "model").mkdir()
    (joey / "model" / "57.ckpt").write_bytes(b"")
    (joey / "data").mkdir()
    for lang in ("en", "de"):
        (joey / "data" / f"test_toy.{lang}").write_bytes((tiny_corpus / f"test_toy.{lang}").read_bytes())
    (joey / "train.yaml").write_text(yaml.safe_dump({"data": {
        "test": str(joey / "data" / "test_toy"), "dev": "unused", "src": {"lang": "en"}, "trg": {"lang": "de"}},
        "testing": {"beam_size": 5}}), encoding="utf-8")
    python = joey / "venv" / "bin" / "python"
    python.write_text(FAKE_JOEY)
    python.chmod(0o755)
    assert main(["--run", str(trained_run), "--what", "decode", "--precision", "config", "--beams", "2",
                 "--split", "test_toy", "--joey", str(joey)]) == 0
    _, record = _lines(capsys)
    assert record["what"] == "decode-vs-joey" and record["beam"] == 2 and record["sentences"] == 30
    assert len(record["seconds"]) == len(record["joey_seconds"]) == 2 and record["joey_over_ours"] > 0
    assert record["bleu"] > 20 and record["joey_bleu"] < 5  # the model translates; the stand-in copies English
    written = yaml.safe_load((trained_run / "eval" / "bench-joey" / "joey-beam2.yaml").read_text())
    assert written["testing"]["beam_size"] == 2 and "dev" not in written["data"]
    assert written["testing"]["load_model"].endswith("57.ckpt")
    assert main(["--run", str(trained_run), "--what", "decode", "--joey", str(tmp_path)]) == 2  # checked first
    assert capsys.readouterr().err.startswith(f"error: {tmp_path}/venv/bin/python not found")


def test_train_memory_records_where_the_memory_goes_and_draws_it(trained_run, tmp_path):
    """bench.train_memory trains a copy of the run (its checkpoints untouched) and records, every N updates and
    after each validation, the anonymous RSS beside the reachable tensors and glibc's heap; --plot draws them."""
    from bench.train_memory import main as memory_main

    before = sorted(p.name for p in (trained_run / "checkpoints").iterdir())
    assert memory_main(["--run", str(trained_run), "--out", str(tmp_path / "m"), "--every", "5",
                        "train.max_epochs=1", "train.threads=1"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "m" / "memory.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["when"] == "step"] == [5, 10, 15, 20] and rows[-1]["when"] == "validated"
    for r in rows:
        assert 0 < r["tensors_mib"] < r["rss_anon_mib"] <= r["peak_rss_mib"]
    assert sorted(p.name for p in (trained_run / "checkpoints").iterdir()) == before
    assert memory_main(["--plot", str(tmp_path / "m.png"), f"{tmp_path / 'm' / 'memory.jsonl'}:tiny"]) == 0
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_students_bench_tabulates_quality_speed_size_and_memory(trained_run, tmp_path):
    """bench.students on two arms of one run: every column filled, the paired test against the first arm, the
    plot drawn."""
    from bench.students import main as students

    out = tmp_path / "students.json"
    assert students(["--split", "test_toy", "--lines", "60", "--rounds", "1", "--arm", f"beam 2={trained_run}:2",
                     "--arm", f"greedy, shortlist={trained_run}:1:decode.lexical_shortlist=true,decode.lexical_words=5",
                     "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["arm"] for r in rows] == ["beam 2", "greedy, shortlist"]
    assert rows[1]["decode"] == ["decode.lexical_shortlist=true", "decode.lexical_words=5"]
    for row in rows:
        assert row["decode_sentences_per_s"] > 0 and row["translate_s"] > 0 and row["peak_mib"] > 50
        assert row["model_mb"] > 0 and 0 <= row["bleu"] <= 100 and row["lines_per_s_translate"] > 0
    assert "bleu_p" in rows[1] and "bleu_p" not in rows[0]
    assert out.with_suffix(".png").stat().st_size > 0
    assert len((out.with_suffix(".hyps") / "greedy--shortlist.txt").read_text().splitlines()) == 30
