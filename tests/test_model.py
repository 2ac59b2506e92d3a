"""The reference model's invariants on tiny odd sizes (E=10, H=14, B=3): shapes, masking, padding, step =
teacher-forced, the starting weights, the loss, learning a tiny task."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mt.backends import BACKENDS
from mt.config import ModelConfig
from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from mt.model import build_model
from mt.model.attention import BahdanauAttention, LuongAttention
from mt.model.encoder import Encoder
from mt.model.loss import SummedLoss

V, E, H, B = 23, 10, 14, 3
CELLS = ["lstm", "gru", "rnn"]
ATTENTIONS = ["bahdanau", "luong", "none"]


def make_model(cell="lstm", attention="bahdanau", layers=1, bidirectional=True, dropout=0.0, tie=False):
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, attention=attention, emb_dim=E, hidden_dim=H, layers=layers,
                      bidirectional=bidirectional, dropout=dropout, tie_embeddings=tie, share_embeddings=False)
    return build_model(cfg, V, V + 2).eval()


def make_encoder(vocab=V, emb=E, hidden=H, **sizes) -> Encoder:
    """An encoder from a ModelConfig of these sizes (and ``layers``, ``cell``, ``bidirectional``), no dropout."""
    return Encoder(ModelConfig(emb_dim=emb, hidden_dim=hidden, dropout=0.0, **sizes), vocab)


def padded_batch():
    lens = torch.tensor([5, 2, 4])
    src = torch.randint(4, V, (B, 5))
    for i, n in enumerate(lens):
        src[i, n:] = PAD_ID
    return src, lens


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_shapes(cell, attention):
    model = make_model(cell, attention, layers=2)
    src, lens = padded_batch()
    tgt_in = torch.randint(4, V, (B, 6))
    ctx, state = model.encode(src, lens)
    assert ctx.enc.states.shape == (B, 5, H)
    assert ctx.enc.final_h.shape == (2, B, H)
    assert len(state.h) == 2 and state.h[0].shape == (B, H)
    assert (state.c is not None) == (cell == "lstm")
    assert model(src, lens, tgt_in).shape == (B, 6, H)
    log_probs, _, weights = model.decoder.step(tgt_in[:, 0], state, ctx)
    assert log_probs.shape == (B, V + 2)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(B))
    assert (weights is None) == (attention == "none")


@pytest.mark.parametrize("attention_cls", [BahdanauAttention, LuongAttention])
def test_attention_masks_padding(attention_cls):
    torch.manual_seed(0)
    att = attention_cls(H, H, 8) if attention_cls is BahdanauAttention else attention_cls(H, H)
    states = torch.randn(B, 5, H)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    states_changed = states.clone()
    states_changed[~mask] = 1e3  # whatever sits at padding must not matter
    query = torch.randn(B, H)
    context, weights = att(query, att.keys(states), states, mask)
    context2, weights2 = att(query, att.keys(states_changed), states_changed, mask)
    assert torch.all(weights[~mask] == 0)
    assert torch.allclose(weights, weights2) and torch.allclose(context, context2)
    assert torch.allclose(weights.sum(-1), torch.ones(B))
    assert context.shape == (B, H)


@pytest.mark.parametrize("cell", CELLS)
def test_encoder_padding_does_not_change_a_sentence(cell):
    torch.manual_seed(0)
    enc = make_encoder(layers=2, cell=cell).eval()
    sentence = torch.tensor([[5, 6, 7]])
    alone = enc(sentence, torch.tensor([3]))
    batch = torch.tensor([[5, 6, 7, PAD_ID, PAD_ID, PAD_ID], [8, 9, 10, 11, 12, 13]])
    together = enc(batch, torch.tensor([3, 6]))
    assert torch.allclose(alone.states[0], together.states[0, :3], atol=1e-6)
    assert torch.all(together.states[0, 3:] == 0)
    assert torch.allclose(alone.final_h[:, 0], together.final_h[:, 0], atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_step_by_step_equals_teacher_forced(cell, attention):
    model = make_model(cell, attention, layers=2)
    src, lens = padded_batch()
    tgt_in = torch.randint(4, V, (B, 6))
    tgt_in[:, 0] = BOS_ID
    with torch.no_grad():
        forced = model.decoder.output(model(src, lens, tgt_in)).log_softmax(-1)  # (B, T, V)
        ctx, state = model.encode(src, lens)
        for t in range(tgt_in.shape[1]):
            log_probs, state, _ = model.decoder.step(tgt_in[:, t], state, ctx)
            assert torch.allclose(log_probs, forced[:, t], atol=1e-5), f"step {t}"


@pytest.mark.parametrize("tie", [False, True])
def test_search_step_in_bf16_scores_with_fp32_logits(tie):
    """Under bf16 autocast (decode.precision) the search step runs the decoder in bf16 but the output layer in
    fp32: a bf16 logit keeps 8 bits (~0.06 at 10), enough to reorder close beam hypotheses."""
    model = make_model(tie=tie)
    with torch.no_grad():  # logits of 10-20, the size a trained model gives
        model.decoder.output.weight.mul_(200.0)
    src, lens = padded_batch()
    prev = torch.randint(4, V, (B,))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ctx, state = model.encode(src, lens)
        log_probs, new_state, _ = model.decoder.step(prev, state, ctx)
        vectors = model.decoder.readout(new_state.feed)  # what the output layer reads (bf16 where tied)
    assert log_probs.dtype == torch.float32
    assert new_state.feed.dtype == torch.bfloat16  # the decoder itself did run in bf16
    reference = F.linear(vectors.float(), model.decoder.output.weight).log_softmax(-1)  # fp32 throughout
    assert torch.allclose(log_probs, reference, atol=1e-5)
    bf16_logits = F.linear(vectors.bfloat16(), model.decoder.output.weight.bfloat16()).float().log_softmax(-1)
    assert not torch.allclose(bf16_logits, reference, atol=1e-3)  # what the test guards against


def rdrop_reference(x1, x2, w, target, smoothing, alpha):
    """R-Drop through autograd: the two passes' mean cross-entropy + alpha / 4 x their symmetric KL, summed."""
    z1, z2 = x1 @ w.t(), x2 @ w.t()
    ce = sum(F.cross_entropy(z, target, reduction="sum", label_smoothing=smoothing) for z in (z1, z2))
    lp1, lp2 = z1.log_softmax(1), z2.log_softmax(1)
    kl = F.kl_div(lp2, lp1, log_target=True, reduction="sum") + F.kl_div(lp1, lp2, log_target=True, reduction="sum")
    return 0.5 * ce + 0.25 * alpha * kl


def test_summed_loss_with_rdrop_runs_two_dropout_passes_in_training_only():
    src, lens = padded_batch()
    tgt_in = torch.randint(4, V, (B, 6))
    targets = torch.randint(4, V, (B, 6))
    targets[1, 3:] = PAD_ID
    model = make_model(dropout=0.3)
    plain, rdrop = SummedLoss(model, 0.1), SummedLoss(model, 0.1, rdrop=5.0)
    # evaluation (and validation): one pass, the plain loss
    assert torch.equal(rdrop(src, lens, tgt_in, targets=targets), plain(src, lens, tgt_in, targets=targets))
    model.train()
    torch.manual_seed(1)
    two_passes = rdrop(src, lens, tgt_in, targets=targets)
    # what it computes: both copies of the batch in one pass (2B rows, each its own dropout masks)
    torch.manual_seed(1)
    first, second = model(*(torch.cat([x, x]) for x in (src, lens, tgt_in))).chunk(2)
    real = targets != PAD_ID
    expected = rdrop_reference(first[real], second[real], model.output_layer.weight, targets[real], 0.1, 5.0)
    assert torch.allclose(two_passes, expected, rtol=1e-4)
    assert not torch.allclose(first, second)  # the masks differ, so the KL term is not zero
    without_dropout = make_model(dropout=0.0).train()
    same = SummedLoss(without_dropout, 0.1, rdrop=5.0)(src, lens, tgt_in, targets=targets)
    assert torch.allclose(same, SummedLoss(without_dropout, 0.1)(src, lens, tgt_in, targets=targets), rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("backend, cell, attention, tie, share", [
    ("reference", "lstm", "bahdanau", True, True),
    ("fast", "lstm", "bahdanau", False, False), ("fast", "gru", "bahdanau", False, False),
    ("fast", "rnn", "bahdanau", False, False), ("fast", "lstm", "luong", False, False),
    ("fast", "lstm", "none", False, False), ("fast", "lstm", "bahdanau", True, False),
    ("fast", "lstm", "bahdanau", True, True)])
def test_each_cell_and_attention_learns_a_tiny_task(backend, cell, attention, tie, share):
    """Reverse sequences of 2-4 symbols: every kind (and tied output embeddings, and one embedding matrix for
    source, target and output) must drive the loss close to zero; the reference learns the recipe's shape
    (the backends compute the same function: tests/test_backends.py)."""
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, attention=attention, emb_dim=16, hidden_dim=32, dropout=0.0, tie_embeddings=tie,
                      share_embeddings=share)
    model = BACKENDS[backend].build_model(cfg, 12, 12)
    loss_fn = BACKENDS[backend].loss(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(1)
    first = last = None
    for _ in range(200):
        n = int(torch.randint(2, 5, (1,), generator=gen))
        src = torch.randint(4, 12, (32, n), generator=gen)
        tgt = src.flip(1)
        tgt_in = torch.cat([torch.full((32, 1), BOS_ID), tgt], 1)
        tgt_out = torch.cat([tgt, torch.full((32, 1), 3)], 1)
        loss = loss_fn(src, torch.full((32,), n), tgt_in, targets=tgt_out) / tgt_out.numel()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        first = loss.item() if first is None else first
        last = loss.item()
    assert first > 2.0 and last < 0.3, (first, last)


def test_initialisation_follows_the_recipe():
    """Embeddings N(0, E^-0.5) with a zero padding row, recurrent blocks orthogonal per gate, LSTM forget-gate
    bias 1 and the other biases 0, Xavier linear layers; a tied output layer keeps the embeddings' values."""
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=64, hidden_dim=32, tie_embeddings=True, share_embeddings=True)
    model = build_model(cfg, 200, 200)
    embed = model.decoder.embed.weight
    assert torch.all(embed[PAD_ID] == 0) and abs(embed[1:].std().item() - 64 ** -0.5) < 0.01
    assert model.decoder.output.weight is embed
    for rnn, hidden in ((model.encoder.rnn, 16), (model.decoder.rnn, 32)):
        w_hh, b_ih, b_hh = rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0
        for g in range(4):
            block = w_hh[g * hidden:(g + 1) * hidden]
            torch.testing.assert_close(block @ block.t(), torch.eye(hidden), rtol=0, atol=1e-5)
        assert torch.all(b_ih[hidden:2 * hidden] == 1) and b_ih.sum() == hidden and torch.all(b_hh == 0)
    combine = model.decoder.combine.weight  # Xavier-uniform: within +-sqrt(6 / (fan_in + fan_out))
    assert combine.abs().max() <= (6 / (64 + 32)) ** 0.5 and combine.std() > 0.5 * (2 / (64 + 32)) ** 0.5
    unset = build_model(cfg, 200, 200, init_weights=False)  # weights about to be loaded: not initialised
    assert not torch.all(unset.decoder.rnn.bias_ih_l0[32:64] == 1)


def test_shared_embeddings_are_one_matrix_that_both_sides_train():
    """model.share_embeddings: the encoder's embeddings are the decoder's (and, tied, the output layer's), so the
    model has V x E fewer parameters, and a piece seen only on the source side still moves the shared row."""
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=E, hidden_dim=H, dropout=0.0, tie_embeddings=True, share_embeddings=True)
    model = build_model(cfg, V, V)
    separate = build_model(ModelConfig(emb_dim=E, hidden_dim=H, dropout=0.0, tie_embeddings=True,
                                       share_embeddings=False), V, V)
    assert model.encoder.embed.weight is model.decoder.embed.weight is model.decoder.output.weight
    assert model.num_parameters() == separate.num_parameters() - V * E
    untied = build_model(ModelConfig(emb_dim=E, hidden_dim=H, dropout=0.0, tie_embeddings=False,
                                     share_embeddings=True), V, V)
    src, lens = padded_batch()
    src[0, 0] = 4  # piece 4: on the source side only; the target reads BOS and piece 5
    tgt_in = torch.full((B, 3), 5)
    tgt_in[:, 0] = BOS_ID
    untied(src, lens, tgt_in).sum().backward()  # untied: the output layer's gradient does not reach the matrix
    grad = untied.decoder.embed.weight.grad  # (V, E)
    assert grad[4].abs().sum() > 0 and grad[5].abs().sum() > 0
    assert grad[EOS_ID].abs().sum() == 0 and grad[PAD_ID].abs().sum() == 0  # EOS is read by neither side
    again = build_model(cfg, V, V)  # a checkpoint's state dict (both names) loads and keeps the sharing
    again.load_state_dict(model.state_dict())
    assert again.encoder.embed.weight is again.decoder.embed.weight
    assert torch.equal(again.encoder.embed.weight, model.decoder.embed.weight)


def test_shared_embeddings_need_one_vocabulary():
    from mt.errors import MTError

    with pytest.raises(MTError, match="the source has 23 pieces and the target 25"):
        build_model(ModelConfig(emb_dim=E, hidden_dim=H, share_embeddings=True), V, V + 2)
