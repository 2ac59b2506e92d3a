"""The fast backend (mt.fast) computes the reference model (mt.model): on the same weights and random odd shapes
the same losses and gradients (fp32: within 1e-5 relative; bf16: within what bf16 allows), the same step
log-probabilities, and identical greedy and beam translations of a trained model. A change to one implementation
that the other does not follow fails here.

Tolerances: the differences come from summing in another order (the fused loops multiply [feed; h] at once,
fold biases, compute tanh through sigmoid): in fp64 within 1e-10 of each other, in fp32 within 1e-4 (relative
norm; a small gradient such as the attention query's, summed over steps, loses most digits to cancellation). Dropout draws different random
numbers in the two backends (``ByteDropout`` rounds the rate to 1/256), so equality is tested without it; the
fast backend's own dropout is tested against its step loop with the same masks in tests/test_fast.py.
"""

from __future__ import annotations

import pytest
import torch

from mt.backends import BACKENDS, resolve_backend
from mt.config import ModelConfig
from mt.data.tokenizer import BOS_ID, PAD_ID
from mt.errors import MTError
from mt.run import RunDir

V, E, H = 23, 10, 14

SHAPES = [  # cell, attention, layers, bidirectional, tie, share
    ("lstm", "bahdanau", 1, True, True, True),  # the recipe's shape: the fused loop
    ("lstm", "bahdanau", 2, True, False, False),
    ("lstm", "luong", 1, False, True, False),
    ("lstm", "none", 1, True, False, False),
    ("gru", "bahdanau", 2, True, True, True),
    ("gru", "luong", 1, True, False, False),
    ("rnn", "bahdanau", 1, True, False, False),
]


def pair(cell="lstm", attention="bahdanau", layers=1, bidirectional=True, tie=True, share=True, dropout=0.0,
         dtype=torch.float32):
    """(reference, fast) models with the same weights: built from one seed, the fast one loaded from the
    reference's state dict (as a checkpoint of one backend loads into the other)."""
    cfg = ModelConfig(cell=cell, attention=attention, emb_dim=E, hidden_dim=H, layers=layers,
                      bidirectional=bidirectional, dropout=dropout, tie_embeddings=tie, share_embeddings=share)
    torch.manual_seed(0)
    reference = BACKENDS["reference"].build_model(cfg, V, V).to(dtype)
    fast = BACKENDS["fast"].build_model(cfg, V, V, init_weights=False).to(dtype)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def batch(seed: int = 1, sentences: int = 5):
    """Source (B, S) and target (B, T) ids with uneven lengths and padding."""
    gen = torch.Generator().manual_seed(seed)
    src_lens = torch.tensor([7, 2, 5, 7, 1][:sentences])
    tgt_lens = torch.tensor([6, 3, 1, 4, 6][:sentences])
    src = torch.randint(4, V, (sentences, 7), generator=gen)
    src[torch.arange(7)[None] >= src_lens[:, None]] = PAD_ID
    targets = torch.randint(4, V, (sentences, 6), generator=gen)
    targets[torch.arange(6)[None] >= tgt_lens[:, None]] = PAD_ID
    tgt_in = torch.cat([torch.full((sentences, 1), BOS_ID), targets[:, :-1].clamp(min=0)], 1)
    return src, src_lens, tgt_in, targets


def loss_and_gradients(model, backend: str, smoothing=0.1, rdrop=0.0, autocast=False):
    model.train()
    loss_fn = BACKENDS[backend].loss(model, smoothing, rdrop)
    src, src_lens, tgt_in, targets = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = loss_fn(src, src_lens, tgt_in, targets=targets)
    grads = torch.autograd.grad(loss * 0.37, [p for _, p in model.named_parameters()])
    return loss.detach(), dict(zip([n for n, _ in model.named_parameters()], grads))


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("cell, attention, layers, bidirectional, tie, share", SHAPES)
@pytest.mark.parametrize("rdrop", [0.0, 5.0])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_training_loss_and_every_gradient_equal_the_reference(cell, attention, layers, bidirectional, tie, share,
                                                               rdrop, dtype, tol):
    """fp64 shows the two compute the same function (what is left is rounding); fp32 is what training runs."""
    reference, fast = pair(cell, attention, layers, bidirectional, tie, share, dtype=dtype)
    want, want_grads = loss_and_gradients(reference, "reference", rdrop=rdrop)
    got, got_grads = loss_and_gradients(fast, "fast", rdrop=rdrop)
    assert abs(got.item() - want.item()) <= tol * want.item()
    for name, g in want_grads.items():
        assert got_grads[name].dtype == dtype and relative(got_grads[name], g) < tol, name


def test_bf16_training_stays_within_what_bf16_allows():
    """Under bf16 autocast both backends multiply in bf16 (8 bits of mantissa); they round in different places,
    so loss and gradients agree to bf16's precision, not bit for bit: loss within 1%, gradients within 5%
    (relative norm) of each other."""
    reference, fast = pair()
    want, want_grads = loss_and_gradients(reference, "reference", autocast=True)
    got, got_grads = loss_and_gradients(fast, "fast", autocast=True)
    assert abs(got.item() - want.item()) <= 1e-2 * want.item()
    for name, g in want_grads.items():
        assert got_grads[name].dtype == torch.float32 and relative(got_grads[name], g) < 5e-2, name


@pytest.mark.parametrize("cell, attention, layers, bidirectional, tie, share", SHAPES)
def test_search_steps_equal_the_reference(cell, attention, layers, bidirectional, tie, share):
    """encode, then step and step_top for K = 3 rows per sentence (beam search's shape), exact candidates: the
    same log-probabilities, ids and attention."""
    reference, fast = pair(cell, attention, layers, bidirectional, tie, share)
    fast.use_candidates("exact")
    src, src_lens, tgt_in, _ = batch()
    rows = torch.arange(src.shape[0]).repeat_interleave(3)
    results = []
    for model in (reference, fast):
        with torch.inference_mode():
            ctx, state = model.eval().encode(src, src_lens)
            state = state.index_select(rows)
            out = []
            for t in range(tgt_in.shape[1]):
                log_probs, _, weights = model.step(tgt_in[rows, t], state, ctx)
                values, ids, state, _ = model.step_top(tgt_in[rows, t], state, ctx, 4)
                out.append((log_probs, values, ids, weights))
        results.append(out)
    for t, (want, got) in enumerate(zip(*results)):
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-5, msg=f"step {t}")
        torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-5, msg=f"step {t}")
        assert torch.equal(got[2], want[2]), f"step {t}"
        assert (got[3] is None) == (want[3] is None)
        if want[3] is not None:
            torch.testing.assert_close(got[3], want[3], rtol=0, atol=1e-5)


def test_language_models_equal():
    cfg = ModelConfig(emb_dim=E, hidden_dim=H, dropout=0.0)
    torch.manual_seed(0)
    reference = BACKENDS["reference"].build_language_model(cfg, V, "tgt")
    fast = BACKENDS["fast"].build_language_model(cfg, V, "tgt", init_weights=False)
    fast.load_state_dict(reference.state_dict())
    ids = batch()[3].clamp(min=4)
    losses = [BACKENDS[name].loss(m, 0.1)(ids, targets=ids) for name, m in (("reference", reference), ("fast", fast))]
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=0)


def test_one_seed_builds_the_same_weights_in_both_backends():
    """The backends make the same parts in the same order: a run's seed gives the same starting point."""
    cfg = ModelConfig(emb_dim=E, hidden_dim=H)
    models = []
    for name in ("reference", "fast"):
        torch.manual_seed(3)
        models.append(BACKENDS[name].build_model(cfg, V, V))
    ref, fast = (m.state_dict() for m in models)
    assert ref.keys() == fast.keys() and all(torch.equal(ref[k], fast[k]) for k in ref)


def test_auto_is_fast_and_a_wrong_name_is_refused():
    assert resolve_backend("auto").name == "fast"
    with pytest.raises(MTError, match="unknown backend 'turbo'; valid: auto, reference, fast"):
        resolve_backend("turbo")


def test_a_trained_model_translates_identically_in_both_backends(trained_run):
    """The same checkpoint, greedy and beam 3 over the toy test split: identical lines with exact candidates
    (``decode.candidates=exact``), and the default approximate candidates within their stated tolerance (at
    least 95% identical lines); bf16 decoding within bf16's (at least 90% identical lines)."""
    from mt.decode.translator import Translator

    sources, _ = RunDir.of(trained_run).split_texts("test_toy")
    texts = {}
    for backend in ("reference", "fast"):
        for candidates in ("exact", "approximate"):
            for precision in ("fp32", "bf16"):
                translator = Translator.from_run(trained_run, backend=backend, threads=1)
                translator.set_decoding([f"decode.candidates={candidates}", f"decode.precision={precision}"])
                assert translator.facts["backend"] == backend
                for beam in (1, 3):
                    texts[backend, candidates, precision, beam] = [t.text for t in
                                                                   translator.translate_batch(sources, beam=beam)]
    for beam in (1, 3):
        want = texts["reference", "exact", "fp32", beam]
        assert texts["fast", "exact", "fp32", beam] == want
        assert texts["reference", "approximate", "fp32", beam] == want  # the reference is always exact
        assert _same(texts["fast", "approximate", "fp32", beam], want) >= 0.95
        assert _same(texts["fast", "exact", "bf16", beam], texts["reference", "exact", "bf16", beam]) >= 0.9


def _same(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(b)
