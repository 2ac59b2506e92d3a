"""mt translate / eval / score on a trained tiny run: line alignment, odd input, reports with signatures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from eval.scoring import score
from mt.cli import main
from mt.decode.translator import Translator


def run_cli(args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mt", *args], input=stdin, capture_output=True, timeout=300)


ODD_LINES = [
    "the dog runs",
    "",
    "   \t ",
    "a cat 🐈 with\u200b zero-width and \x07 bell",
    "שלום עולם مرحبا",
    "the " * 400,  # longer than the model's maximum source length
    "\ue000 private use, combining e\u0301",
]


def test_translate_keeps_line_alignment_on_odd_input(trained_run):
    result = run_cli(["translate", "--run", str(trained_run), "--beam", "2"], "\n".join(ODD_LINES).encode() + b"\n")
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode().split("\n")
    assert out[-1] == "" and len(out) - 1 == len(ODD_LINES)
    assert out[1] == "" and out[2] == ""  # empty and blank lines give empty lines
    assert out[0].strip() != ""
    assert "translated in" in result.stderr.decode() and out[5].strip()  # the long line in parts, not cut


def test_translate_rejects_bytes_that_are_not_utf8(trained_run):
    result = run_cli(["translate", "--run", str(trained_run)], b"the dog\n\xff\xfe\n")
    assert result.returncode == 2
    assert result.stderr.decode().strip() == "error: standard input line 2: bytes that are not UTF-8 at byte 0 of the line"


def test_nbest_format_is_moses(trained_run, tmp_path):
    """``i ||| translation ||| score``, N lines per input (fewer when the beam finds fewer), best first, no blank
    lines: what Moses and Marian write and reranking scripts read."""
    src = tmp_path / "in.txt"
    src.write_text("the dog runs\n\na red cat\n")
    out = tmp_path / "out.txt"
    assert main(["translate", "--run", str(trained_run), "--nbest", "3", "--input", str(src), "--output", str(out)]) == 0
    rows = [line.split(" ||| ") for line in out.read_text().splitlines()]
    assert all(len(r) == 3 for r in rows) and {r[0] for r in rows} == {"0", "1", "2"}
    first = [r for r in rows if r[0] == "0"]
    assert 1 <= len(first) <= 3
    scores = [float(r[2]) for r in first]
    assert scores == sorted(scores, reverse=True)
    assert [r for r in rows if r[0] == "1"] == [["1", "", "0.0000"]]  # an empty input has one, empty, translation


def test_translator_returns_attention_and_pieces(trained_run):
    t = Translator.from_run(trained_run).translate_batch(["the red dog runs"], beam=3, return_attention=True)[0]
    assert "".join(t.src_pieces).replace("\u2581", " ").strip() == "the red dog runs"
    assert "".join(p for p in t.tgt_pieces if p != "</s>").replace("\u2581", " ").strip() == t.text
    assert t.tgt_pieces[-1] == "</s>" and t.text  # the best hypothesis ended with EOS, its step has attention too
    rows = t.attention.sum(dim=1)  # (len(tgt_pieces),): one attention distribution over the source per output
    assert torch.allclose(rows, torch.ones_like(rows), atol=1e-5) and t.attention.shape[1] == len(t.src_pieces)
    assert t.nbest[0][1] == t.text


def test_eval_writes_report(trained_run, capsys):
    assert main(["eval", "--run", str(trained_run), "--split", "test_toy", "--beam", "2"]) == 0
    out = capsys.readouterr().out
    assert "BLEU" in out and "nrefs:1|case:mixed|eff:no|tok:13a" in out
    report = json.loads((trained_run / "eval" / "test_toy.json").read_text())
    assert {"bleu", "chrf", "bleu_lowercase", "signature", "beam", "sentences", "seconds"} <= set(report)
    assert report["sentences"] == 30 and report["beam"] == 2
    hyps = (trained_run / "eval" / "test_toy.hyp").read_text().split("\n")
    assert len(hyps) == 31 and hyps[-1] == ""
    assert report["bleu"] > 20


def test_eval_unknown_split_is_one_line(trained_run, capsys):
    assert main(["eval", "--run", str(trained_run), "--split", "nope"]) == 2
    assert "has no split 'nope'; it has" in capsys.readouterr().err


def test_translate_without_checkpoint_says_train_first(tmp_path, trained_run, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run / "data", run / "data")
    assert main(["translate", "--run", str(run)]) == 2
    assert "no trained model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "hyps, refs, bleu, bleu_lc, chrf",
    [
        (["the cat sat on the mat"], ["the cat sat on the mat"], 100.0, 100.0, 100.0),
        (["a b c d e"], ["a b c d f"], 66.87, 66.87, None),  # (4/5 * 3/4 * 2/3 * 1/2) ** (1/4)
        (["x y z w"], ["a b c d"], 0.0, 0.0, 0.0),
        (["The Cat sat on the Mat"], ["the cat sat on the mat"], None, 100.0, None),
    ],
)
def test_scores_table(hyps, refs, bleu, bleu_lc, chrf):
    report = score(hyps, refs)
    if bleu is not None:
        assert report["bleu"] == pytest.approx(bleu, abs=0.01)
    else:
        assert report["bleu"] < 100.0
    assert report["bleu_lowercase"] == pytest.approx(bleu_lc, abs=0.01)
    if chrf is not None:
        assert report["chrf"] == pytest.approx(chrf, abs=0.01)
    assert report["signature"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    assert "case:lc" in report["signature"]["bleu_lowercase"]


def test_score_cli_line_mismatch(tmp_path, capsys):
    (tmp_path / "h").write_text("a\nb\n")
    (tmp_path / "r").write_text("a\n")
    assert main(["score", "--hyp", str(tmp_path / "h"), "--ref", str(tmp_path / "r")]) == 2
    assert "has 2 lines but" in capsys.readouterr().err


@pytest.mark.parametrize("src, ref, message", [
    ("", "a\n", "src.txt is empty"), ("a\n", "", "ref.txt is empty"), ("a\nb\n", "a\n", "has 2 lines but")])
def test_eval_files_are_checked_before_the_model_loads(tmp_path, capsys, src, ref, message):
    """No run, no model: the files' fault is reported first (it used to be a sacreBLEU IndexError after loading)."""
    (tmp_path / "src.txt").write_text(src)
    (tmp_path / "ref.txt").write_text(ref)
    assert main(["eval", "--run", str(tmp_path / "no-run"), "--src", str(tmp_path / "src.txt"),
                 "--ref", str(tmp_path / "ref.txt")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_int8_quantized_decoding_stays_close(trained_run):
    sentences = ["the dog runs", "a red cat sits near the man", "the big woman eats"]
    plain = Translator.from_run(trained_run).translate_batch(sentences, beam=2)
    quantized = Translator.from_run(trained_run, quantize="int8").translate_batch(sentences, beam=2)
    assert len(quantized) == len(sentences)
    assert sum(p.text == q.text for p, q in zip(plain, quantized)) >= 2


def test_eval_with_ensemble_writes_its_own_report(trained_run, tmp_path, capsys):
    main_report = trained_run / "eval" / "test_toy.json"
    assert main(["eval", "--run", str(trained_run), "--split", "test_toy"]) == 0
    before = main_report.read_text()
    last = trained_run / "checkpoints" / "last.pt"
    assert main(["eval", "--run", str(trained_run), "--split", "test_toy", "--ensemble", str(last)]) == 0
    report = json.loads((trained_run / "eval" / "test_toy.ensemble2.json").read_text())
    assert report["ensemble"] == [str(last)] and report["sentences"] == 30
    assert main_report.read_text() == before  # the single model's result is kept
    assert main(["translate", "--run", str(trained_run), "--ensemble", str(tmp_path / "nowhere")]) == 2
    assert "ensemble member not found" in capsys.readouterr().err


def test_the_python_api_gives_a_string_for_a_string_and_a_list_for_a_list(trained_run):
    import mt
    from mt import Translator

    translator = Translator.from_run(trained_run)
    sentences = ["the dog runs", "a small cat sits near the man"]
    objects = translator.translate_batch(sentences, beam=2)
    assert translator.translate(sentences[0], beam=2) == objects[0].text
    assert translator.translate(sentences, beam=2) == [t.text for t in objects]
    assert translator.translate((s for s in sentences), beam=2) == [t.text for t in objects]  # any iterable
    assert "Translator" in mt.__all__
    lazy = subprocess.run([sys.executable, "-c", "import mt, sys; print('torch' in sys.modules)"],
                          capture_output=True, text=True)
    assert lazy.stdout.strip() == "False"  # `import mt` alone stays light: torch loads with the Translator
