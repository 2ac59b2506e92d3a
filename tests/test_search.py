"""Greedy and beam search: beam 1 equals greedy, results do not depend on the batch, n-best ordering."""

from __future__ import annotations

import pytest
import torch

from mt.config import ModelConfig
from mt.data.tokenizer import PAD_ID
from mt.decode.beam import beam_search
from mt.decode.greedy import greedy_search
from mt.fast import FastSeq2Seq
from mt.fast.recurrent import project_input
from mt.fast.top_tokens import Bf16Logits, Int8Logits, top_log_probs
from mt.model import build_model

V = 19


def trained_ish_model(seed: int = 0, attention: str = "bahdanau", build=build_model):
    """A random model with a sharpened output layer, so that searches have real choices to make."""
    torch.manual_seed(seed)
    model = build(ModelConfig(emb_dim=10, hidden_dim=14, attention=attention, dropout=0.0), V, V).eval()
    with torch.no_grad():
        model.decoder.output.weight.mul_(8.0)
    return model


def training_update(model, weight: torch.nn.Parameter) -> None:
    """A training update as training makes it: in training mode, by fused Adam, which writes the weight without
    counting in its ``_version``; then back to evaluation."""
    model.train()
    weight.grad = torch.ones_like(weight)
    version = weight._version
    torch.optim.Adam([weight], lr=0.5, fused=True).step()
    assert weight._version == version  # what makes the version counter alone not enough
    weight.grad = None
    model.eval()


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
    for g, hyps in zip(greedy, beams):  # scores within the shortlist's rounding of the normaliser (top_tokens)
        assert hyps[0].log_prob >= g.log_prob - 1e-4
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        assert len(hyps) >= 1


def test_max_length_is_respected_and_attention_shapes():
    model = trained_ish_model(5)
    step = model.step

    def no_eos(prev, state, ctx, n):  # EOS never wins, so hypotheses run to their maximum length
        log_probs, state, weights = step(prev, state, ctx)
        return (*log_probs.index_fill(1, torch.tensor([3]), -1e9).topk(n, dim=1), state, weights)

    model.step_top = no_eos
    src, lens = batch_of(SENTENCES)
    for hyps, n in zip(beam_search(model, src, lens, 3, 1.0, 1.0, 2, return_attention=True), lens.tolist()):
        h = hyps[0]
        assert len(h.tokens) == n + 2
        assert h.attention.shape == (n + 2, n)
        assert torch.allclose(h.attention.sum(-1), torch.ones(n + 2), atol=1e-5)
    for h, n in zip(greedy_search(model, src, lens, 1.0, 2, return_attention=True), lens.tolist()):
        assert len(h.tokens) == n + 2 and h.attention.shape == (n + 2, n)


def test_greedy_sentences_leave_the_batch_when_they_end():
    """A sentence at its end is not computed any further: with EOS ruled out, sentences of 4, 2, 7, 1 and 3 tokens
    end at their maximum lengths 6, 4, 9, 3 and 5, and each step runs the rows still going."""
    model = trained_ish_model(5)
    step, rows = model.step, []

    def no_eos(prev, state, ctx, n):
        rows.append(prev.shape[0])
        log_probs, state, weights = step(prev, state, ctx)
        return (*log_probs.index_fill(1, torch.tensor([3]), -1e9).topk(n, dim=1), state, weights)

    model.step_top = no_eos
    src, lens = batch_of(SENTENCES)
    hyps = greedy_search(model, src, lens, 1.0, 2)
    assert rows == [5, 5, 5, 4, 3, 2, 1, 1, 1]
    assert [len(h.tokens) for h in hyps] == [6, 4, 9, 3, 5]


@pytest.mark.parametrize("rows,block", [(1, 128), (37, 8), (300, 128)])
def test_top_log_probs_block_by_block_equal_log_softmax_then_topk(rows, block):
    """The search's output layer (mt.fast.top_tokens) gives each row's n best log-probabilities and ids as the
    plain route does, whatever the block size; bf16 inputs are taken in fp32."""
    torch.manual_seed(0)
    x, weight = torch.randn(rows, 16) * 2, torch.randn(50, 16)
    values, ids = top_log_probs(x, weight, 6, block_rows=block)
    want_values, want_ids = torch.log_softmax(x @ weight.t(), dim=-1).topk(6, dim=1)
    assert values.shape == ids.shape == (rows, 6) and torch.equal(ids, want_ids)
    torch.testing.assert_close(values, want_values, rtol=0, atol=1e-5)
    low_values, _ = top_log_probs(x.bfloat16(), weight, 6, block_rows=block)
    torch.testing.assert_close(low_values, torch.log_softmax(x.bfloat16().float() @ weight.t(), -1).topk(6)[0],
                               rtol=0, atol=1e-5)
    assert top_log_probs(x, weight, 80)[0].shape == (rows, 50)  # n beyond the vocabulary: all of it


@pytest.mark.parametrize("rows,block", [(1, 128), (37, 8), (300, 128)])
@pytest.mark.parametrize("kind, tol", [(Bf16Logits, 2e-3), (Int8Logits, 2e-2)])
def test_a_shortlist_keeps_the_fp32_choices_and_scores(rows, block, kind, tol):
    """bf16 or int8 decoding shortlists each row's candidates with a low-precision multiply and rescores them in
    fp32: the same tokens as the fp32 route, their logits exact, the normaliser off by the tail's rounding only."""
    torch.manual_seed(0)
    x, weight = torch.randn(rows, 16) * 2, torch.randn(300, 16)
    want_values, want_ids = torch.log_softmax(x @ weight.t(), dim=-1).topk(6, dim=1)
    values, ids = top_log_probs(x, weight, 6, block_rows=block, shortlist=kind(weight))
    assert torch.equal(ids, want_ids)
    torch.testing.assert_close(values, want_values, rtol=0, atol=tol)  # a bf16 logit alone is off by up to 0.16 here
    gaps = values[:, :1] - values  # between candidates: fp32 logits, exactly
    torch.testing.assert_close(gaps, want_values[:, :1] - want_values, rtol=0, atol=1e-5)
    full, _ = top_log_probs(x, weight, 300, shortlist=kind(weight))  # the whole vocabulary: fp32 route
    torch.testing.assert_close(full, torch.log_softmax(x @ weight.t(), dim=-1).sort(descending=True)[0],
                               rtol=0, atol=1e-5)


def test_int8_shortlist_does_not_depend_on_the_rows_beside():
    """int8 quantises a block's inputs with one range; each row is scaled and the range pinned, so a sentence's
    candidates and scores are the same whatever it is batched with."""
    torch.manual_seed(0)
    x, weight = torch.randn(40, 16), torch.randn(300, 16)
    x[5] *= 50  # one row far larger than the others
    shortlist = Int8Logits(weight)
    alone = torch.cat([top_log_probs(x[i:i + 1], weight, 4, shortlist=shortlist)[0] for i in range(40)])
    assert torch.equal(top_log_probs(x, weight, 4, shortlist=shortlist)[0], alone)
    assert (shortlist(x, None) - x @ weight.t()).abs().max() < 0.02 * (x @ weight.t()).abs().max()


def test_search_shortlists_in_int8_for_fp32_and_in_bf16_for_bf16():
    """Which shortlist the fast decoder's search gets: bf16 for bf16 decoding, int8 for fp32 decoding on x86,
    kept while the weight is unchanged and made again after a training update or an edit; none with
    decode.candidates=exact."""
    model = trained_ish_model(4, build=FastSeq2Seq.build)
    decoder = model.decoder
    assert isinstance(decoder.search_shortlist(torch.bfloat16), Bf16Logits)
    if torch.backends.quantized.engine in ("x86", "fbgemm"):
        first = decoder.search_shortlist(torch.float32)
        assert isinstance(first, Int8Logits) and decoder.search_shortlist(torch.float32) is first
        training_update(model, decoder.output.weight)
        second = decoder.search_shortlist(torch.float32)
        assert second is not first
        with torch.no_grad():
            decoder.output.weight.mul_(1.5)  # an edit in evaluation mode: the version counter tells
        assert decoder.search_shortlist(torch.float32) is not second
    model.use_candidates("exact")
    assert decoder.search_shortlist(torch.float32) is None and decoder.search_shortlist(torch.bfloat16) is None


def test_search_looks_up_input_projections_once_they_pay_and_remakes_them_after_an_update():
    """Search multiplies its steps' input projections until the rows since the weights changed reach V (19), then
    looks them up in a table of every token's, which gives the multiply's numbers; a training update or loading
    weights starts over."""
    model = trained_ish_model(6, build=FastSeq2Seq.build)
    decoder = model.decoder
    inputs, prev = decoder._search_inputs, torch.tensor([1, 5, 7, 18, 2])

    def project() -> torch.Tensor:
        with torch.no_grad():
            return inputs(decoder.embed, decoder.rnn, prev)  # (5, 4H)

    def multiplied() -> torch.Tensor:
        with torch.no_grad():
            return project_input(decoder.rnn, decoder.embed(prev))

    for rows in (5, 10, 15):
        assert torch.equal(project(), multiplied()) and inputs.table is None and inputs.rows == rows
    looked_up = project()  # 20 rows >= V: the table
    assert inputs.table is not None and inputs.table.shape == (V, decoder.rnn.weight_ih_l0.shape[0])
    assert torch.allclose(looked_up, multiplied(), atol=1e-6)
    training_update(model, decoder.embed.weight)
    assert torch.equal(project(), multiplied()) and inputs.table is None and inputs.rows == 5
    for _ in range(4):
        project()
    assert inputs.table is not None
    model.load_state_dict(trained_ish_model(7, build=FastSeq2Seq.build).state_dict())
    assert inputs.table is None and torch.equal(project(), multiplied())
    with torch.enable_grad():
        assert inputs(decoder.embed, decoder.rnn, prev).requires_grad  # training's steps: never a table
