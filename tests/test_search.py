"""Greedy and beam search: beam 1 equals greedy, results do not depend on the batch, n-best ordering."""

from __future__ import annotations

import pytest
import torch

from mt.beam import beam_search, coverage_penalty, length_penalty
from mt.config import ModelConfig
from mt.decoding import SearchModel
from mt.greedy import greedy_search
from mt.model import build_model
from mt.tokenizer import BOS_ID, PAD_ID

V = 19


def trained_ish_model(seed: int = 0, attention: str = "bahdanau"):
    """A random model with a sharpened output layer, so that searches have real choices to make."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(emb_dim=10, hidden_dim=14, attention=attention, dropout=0.0), V, V).eval()
    with torch.no_grad():
        model.decoder.output.weight.mul_(8.0)
    return model


def batch_of(sentences: list[list[int]]):
    lens = torch.tensor([len(s) for s in sentences])
    src = torch.full((len(sentences), int(lens.max())), PAD_ID)
    for i, s in enumerate(sentences):
        src[i, : len(s)] = torch.tensor(s)
    return src, lens


SENTENCES = [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16, 17], [4], [6, 6, 6]]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_one_equals_greedy(seed, alpha):
    model = trained_ish_model(seed)
    src, lens = batch_of(SENTENCES)
    greedy = greedy_search(model, src, lens, 1.5, 3)
    beam = beam_search(model, src, lens, beam=1, alpha=alpha, max_len_ratio=1.5, max_len_extra=3)
    assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]
    assert [round(h.log_prob, 4) for h in greedy] == [round(b[0].log_prob, 4) for b in beam]


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_results_do_not_depend_on_batch(search):
    model = trained_ish_model(3)

    def run(sentences):
        src, lens = batch_of(sentences)
        if search == "greedy":
            return [(h.tokens, round(h.score, 4)) for h in greedy_search(model, src, lens, 2.0, 4)]
        return [(b[0].tokens, round(b[0].score, 4)) for b in beam_search(model, src, lens, 4, 1.0, 2.0, 4)]

    together = run(SENTENCES)
    alone = [run([s])[0] for s in SENTENCES]
    shuffled = run(SENTENCES[::-1])[::-1]
    assert together == alone == shuffled


def test_beam_finds_at_least_greedy_score_and_nbest_sorted():
    model = trained_ish_model(4)
    src, lens = batch_of(SENTENCES)
    greedy = greedy_search(model, src, lens, 1.5, 3)
    beams = beam_search(model, src, lens, beam=5, alpha=0.0, max_len_ratio=1.5, max_len_extra=3, nbest=5)
    for g, hyps in zip(greedy, beams):
        assert hyps[0].log_prob >= g.log_prob - 1e-5
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        assert len(hyps) >= 1


def test_max_length_is_respected_and_attention_shapes():
    model = trained_ish_model(5)
    step = model.step

    def no_eos(*args):  # EOS never wins, so hypotheses run to their maximum length
        log_probs, state, weights = step(*args)
        return log_probs.index_fill(1, torch.tensor([3]), -1e9), state, weights

    model.step = no_eos
    src, lens = batch_of(SENTENCES)
    for hyps, n in zip(beam_search(model, src, lens, 3, 1.0, 1.0, 2, return_attention=True), lens.tolist()):
        h = hyps[0]
        assert len(h.tokens) == n + 2
        assert h.attention.shape == (n + 2, n)
        assert torch.allclose(h.attention.sum(-1), torch.ones(n + 2), atol=1e-5)
    for h, n in zip(greedy_search(model, src, lens, 1.0, 2, return_attention=True), lens.tolist()):
        assert len(h.tokens) == n + 2 and h.attention.shape == (n + 2, n)


@pytest.mark.parametrize("to_max_length", [False, True])
def test_coverage_penalty_ranks_by_the_attention_each_hypothesis_gave(to_max_length):
    """score = log_prob / lp(steps) + beta * sum over source positions of log(min(attention received, 1)),
    for hypotheses that end with EOS and for those cut at the maximum length."""
    model = trained_ish_model(6)
    if to_max_length:
        step = model.step
        model.step = lambda *a: (lambda lp, s, w: (lp.index_fill(1, torch.tensor([3]), -1e9), s, w))(*step(*a))
    src, lens = batch_of(SENTENCES)
    found = beam_search(model, src, lens, 4, 1.0, 1.5, 3, nbest=4, return_attention=True, coverage=0.4)
    for hyps, n in zip(found, lens.tolist()):
        for h in hyps:
            assert h.attention.shape[1] == n  # real source positions only: padding is never "unattended"
            received = h.attention.float().sum(0)  # (S,)
            expected = h.log_prob / length_penalty(h.attention.shape[0], 1.0) + 0.4 * float(
                received.clamp(max=1.0).log().sum())
            assert h.score == pytest.approx(expected, abs=1e-4)
            assert h.score <= h.log_prob / length_penalty(h.attention.shape[0], 1.0) + 1e-6
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    # the same search without attention maps kept: the same hypotheses and scores
    quiet = beam_search(model, src, lens, 4, 1.0, 1.5, 3, nbest=4, coverage=0.4)
    assert [[(h.tokens, round(h.score, 4)) for h in hyps] for hyps in quiet] == \
        [[(h.tokens, round(h.score, 4)) for h in hyps] for hyps in found]


def test_coverage_penalty_changes_the_ranking_and_keeps_batches_independent():
    model = trained_ish_model(7)
    src, lens = batch_of(SENTENCES)
    plain = beam_search(model, src, lens, 5, 1.0, 2.0, 4, nbest=5)
    strong = beam_search(model, src, lens, 5, 1.0, 2.0, 4, nbest=5, coverage=5.0)
    assert [[h.tokens for h in hyps] for hyps in plain] != [[h.tokens for h in hyps] for hyps in strong]
    alone = [beam_search(model, *batch_of([s]), 5, 1.0, 2.0, 4, nbest=5, coverage=5.0)[0][0] for s in SENTENCES]
    assert [(h.tokens, round(h.score, 4)) for h in alone] == [(b[0].tokens, round(b[0].score, 4)) for b in strong]


def test_coverage_penalty_without_attention_is_none():
    model = trained_ish_model(8, attention="none")
    src, lens = batch_of(SENTENCES)
    plain = beam_search(model, src, lens, 4, 1.0, 1.5, 3, nbest=4)
    covered = beam_search(model, src, lens, 4, 1.0, 1.5, 3, nbest=4, coverage=1.0)
    assert [[(h.tokens, h.score) for h in hyps] for hyps in plain] == [[(h.tokens, h.score) for h in hyps] for hyps in covered]


def test_coverage_penalty_value():
    assert coverage_penalty(torch.tensor([1.5, 1.0, 0.5]), 0.2) == pytest.approx(0.2 * torch.tensor(0.5).log().item())
    assert coverage_penalty(torch.tensor([2.0, 1.0]), 1.0) == 0.0


@pytest.mark.parametrize("length, alpha, expected", [(1, 0.0, 1.0), (1, 1.0, 1.0), (7, 1.0, 2.0), (7, 0.5, 2 ** 0.5)])
def test_length_penalty(length, alpha, expected):
    assert length_penalty(length, alpha) == pytest.approx(expected)


def test_ensemble_step_averages_probabilities():
    import math

    from mt.ensemble import Ensemble

    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        models.append(build_model(ModelConfig(emb_dim=10, hidden_dim=14, dropout=0.0), 17, 19).eval())
    ens = Ensemble(models)
    assert isinstance(ens, SearchModel) and isinstance(models[0], SearchModel)  # what greedy and beam search use
    src = torch.tensor([[4, 5, 6, 7], [8, 9, 3, 0]])
    lens = torch.tensor([4, 3])
    prev = torch.tensor([BOS_ID, BOS_ID])
    with torch.no_grad():
        ctx, state = ens.encode(src, lens)
        mixed, _, attention = ens.step(prev, state, ctx)
        singles = []
        for m in models:
            c, s = m.encode(src, lens)
            lp, _, w = m.step(prev, s, c)
            singles.append((lp, w))
    expected = torch.log((singles[0][0].exp() + singles[1][0].exp()) / 2)
    assert torch.allclose(mixed, expected, atol=1e-5)
    assert torch.allclose(mixed.exp().sum(-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(attention, (singles[0][1] + singles[1][1]) / 2)
    assert math.isclose(float(attention[1, 3]), 0.0, abs_tol=1e-7)  # padding still masked


def test_ensemble_of_a_model_with_itself_changes_nothing(trained_run):
    from mt.translator import Translator

    sentences = ["the dog runs", "a small red cat sits near the man", "green"]
    single = Translator.from_run(trained_run, threads=1)
    double = Translator.from_run(trained_run, threads=1, ensemble=[str(trained_run)])
    for beam in (1, 3):
        a, b = single.translate(sentences, beam=beam), double.translate(sentences, beam=beam)
        assert [t.text for t in a] == [t.text for t in b]
        assert all(abs(x.score - y.score) < 1e-4 for x, y in zip(a, b))
