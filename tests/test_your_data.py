"""Your data, your model: sampled translations for back-translation, a reused tokenizer, a translator started from
another translator's weights, synthetic pairs added to a prepared run."""

from __future__ import annotations

import pytest

from mt.cli import main
from mt.decode.sampling import Sampling
from mt.decode.translator import Translator
from tests.conftest import synthetic_pairs

LINES = [src for src, _ in synthetic_pairs(24, seed=7)]


@pytest.fixture(scope="module")
def translator(trained_run) -> Translator:
    return Translator.from_run(trained_run, threads=1)


def test_sampling_is_reproducible_by_seed_whatever_the_batching(translator):
    hot = Sampling(temperature=3.0, seed=5)
    first = [t.text for t in translator.translate(LINES, sampling=hot)]
    translator.set_decoding(["decode.batch_tokens=7"])  # one sentence per batch
    try:
        again = [t.text for t in translator.translate(LINES, sampling=hot)]
        one_by_one = [translator.translate([line], sampling=hot, first_line=i)[0].text for i, line in enumerate(LINES)]
    finally:
        translator.set_decoding(["decode.batch_tokens=4000"])
    other_seed = [t.text for t in translator.translate(LINES, sampling=Sampling(temperature=3.0, seed=6))]
    assert first == again == one_by_one
    assert sum(a != b for a, b in zip(first, other_seed)) >= 3
    shifted = [t.text for t in translator.translate(LINES, sampling=hot, first_line=100)]
    assert shifted != first  # a line's random stream is named by its position in the input


def test_sampling_without_randomness_is_greedy_search(translator):
    greedy = [t.text for t in translator.translate(LINES, beam=1)]
    assert [t.text for t in translator.translate(LINES, sampling=Sampling(temperature=0))] == greedy
    assert [t.text for t in translator.translate(LINES, sampling=Sampling(temperature=5.0, top_k=1))] == greedy


def test_sample_scores_are_the_models_log_probabilities(translator):
    sampled = translator.translate(LINES[:6], sampling=Sampling(temperature=2.0, seed=3))
    greedy = translator.translate(LINES[:6], beam=1)
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
