"""`mt score` and `mt eval` compare systems: the numbers are sacreBLEU's own (its command line on the same files),
and BLEU's tokenizer follows the target language."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mt.cli import main

WORDS = "the a dog cat man woman child red blue green big small runs jumps sits eats near under over with".split()


@pytest.fixture(scope="module")
def systems(tmp_path_factory) -> Path:
    """A reference and two systems of 150 lines, the second closer to the reference."""
    folder, rng = tmp_path_factory.mktemp("systems"), random.Random(0)
    lines = {"ref": [], "a": [], "b": []}
    for _ in range(150):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
        lines["ref"].append(" ".join(words))
        for name, noise in (("a", 0.3), ("b", 0.25)):
            lines[name].append(" ".join(w if rng.random() > noise else rng.choice(WORDS) for w in words))
    for name, text in lines.items():
        (folder / name).write_text("".join(x + "\n" for x in text), encoding="utf-8")
    return folder


def sacrebleu_cli(folder: Path, *args: str) -> dict[str, list[tuple[float, ...]]]:
    """sacreBLEU's own paired test (text table, two decimals) -> metric -> [(score, mean, ci[, p]) per system]."""
    out = subprocess.run([sys.executable, "-m", "sacrebleu", str(folder / "ref"), "-i", str(folder / "a"),
                          str(folder / "b"), "-w", "2", "-f", "text", *args], capture_output=True, text=True,
                         check=True).stdout
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    names = [re.sub(r" \(μ.*", "", c) for c in rows[0][1:]]
    table = {name: [] for name in names}
    for row in rows[1:]:
        for name, cell in zip(names, row[1:]):
            numbers = tuple(float(x) for x in re.findall(r"\d+\.\d+", cell))
            if row[0]:
                table[name].append(numbers)
            else:  # the p-value line under a system
                table[name][-1] += numbers
    return table


def test_score_compares_systems_exactly_as_sacrebleus_command_line(systems, capsys):
    assert main(["score", "--ref", str(systems / "ref"), "--hyp", str(systems / "a"), str(systems / "b"),
                 "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    theirs = {**sacrebleu_cli(systems, "-m", "bleu", "chrf", "ter", "--paired-bs"),
              **sacrebleu_cli(systems, "-m", "chrf", "--chrf-word-order", "2", "--paired-bs")}
    for key, name in (("bleu", "BLEU"), ("chrf", "chrF2"), ("chrf++", "chrF2++"), ("ter", "TER")):
        for row, expected in zip(ours["systems"], theirs[name]):
            got = (row[key]["score"], row[key]["mean"], row[key]["ci"]) + \
                  ((row[key]["p_value"],) if "p_value" in row[key] else ())
            assert got == pytest.approx(expected, abs=0.0051), (key, row["name"])
    assert ours["test"] == "paired bootstrap" and ours["samples"] == 1000
    assert "tok:13a" in ours["signature"]["bleu"] and "bs:1000" in ours["signature"]["bleu"]

    # the table: each score with its interval, the p-value against the baseline, the signatures
    assert main(["score", "--ref", str(systems / "ref"), "--hyp", str(systems / "a"), str(systems / "b"),
                 "--paired", "ar", "--samples", "2000"]) == 0
    table = capsys.readouterr().out
    assert f"| baseline: {systems / 'a'} |" in table and "approximate randomization, 2,000 samples" in table
    assert re.search(r"\| \d+\.\d\d \(\d+\.\d\d ± \d+\.\d\d\), p = 0\.\d{4}", table)


def test_bleu_tokenizes_by_the_target_language(systems, tmp_path, capsys):
    chinese = tmp_path / "zh"
    chinese.write_text("猫坐在垫子上。\n狗在跑。\n", encoding="utf-8")
    assert main(["score", "--ref", str(chinese), "--hyp", str(chinese), "--lang", "zh", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "tok:zh" in result["signature"]["bleu"] and result["systems"][0]["bleu"]["score"] == 100.0
    assert "asian:yes" in result["signature"]["ter"]
    assert main(["score", "--ref", str(chinese), "--hyp", str(chinese), "--lang", "zh", "--tokenize", "char",
                 "--json"]) == 0
    assert "tok:char" in json.loads(capsys.readouterr().out)["signature"]["bleu"]
    try:
        import MeCab  # noqa: F401
    except ImportError:  # without the ja extra: one line that says how to get it, or how to choose another
        assert main(["score", "--ref", str(chinese), "--hyp", str(chinese), "--lang", "ja"]) == 2
        err = capsys.readouterr().err.strip()
        assert "ja-mecab" in err and 'pip install "mt-lstm[ja]"' in err and len(err.splitlines()) == 1


def test_eval_compares_runs_and_keeps_each_runs_own_report(trained_run, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    assert main(["eval", "--run", str(trained_run), "--run", str(other), "--split", "test_toy", "--beam", "2",
                 "--tag", "compared"]) == 0
    out = capsys.readouterr().out
    result = json.loads((trained_run / "eval" / "test_toy.compared.compare.json").read_text())
    assert [s["name"] for s in result["systems"]] == [str(trained_run), str(other)]
    same = result["systems"][1]
    assert same["bleu"]["p_value"] == 1.0 and same["bleu"]["score"] == result["systems"][0]["bleu"]["score"]
    for run in (trained_run, other):  # each run scored as alone
        report = json.loads((run / "eval" / "test_toy.compared.json").read_text())
        assert report["bleu"] == same["bleu"]["score"] and {"chrf++", "ter"} <= set(report)
    assert "paired bootstrap, 1,000 samples" in out
