"""Model invariants on tiny odd sizes (E=10, H=14, B=3): shapes, masking, padding, step = teacher-forced."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mt.config import ModelConfig
from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from mt.model import build_model
from mt.model.attention import BahdanauAttention, LuongAttention
from mt.model.dropout import ByteDropout
from mt.model.encoder import Encoder
from mt.model.loss import SummedLoss, linear_cross_entropy, linear_rdrop_cross_entropy

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


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("block_bytes", [1, 10 ** 9])
def test_search_attention_in_blocks_equals_the_training_form(monkeypatch, dtype, tol, block_bytes):
    """Search (autograd off) makes the energies a block of sentences at a time, tanh folded into a sigmoid in
    fp32: the same weights and contexts as the differentiable form, K rows per sentence, padding masked."""
    torch.manual_seed(0)
    monkeypatch.setattr("mt.model.attention.ENERGY_BLOCK_BYTES", block_bytes)  # 1: a block per sentence
    att, k = BahdanauAttention(H, H, 8), 4
    states = torch.randn(B, 5, H)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    query = torch.randn(B * k, H) * 3
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        want = att(query, att.keys(states), states, mask)  # autograd on: the training form
        with torch.no_grad():
            got = att(query, att.keys(states), states, mask)
    for a, b in zip(got, want):
        assert a.shape == b.shape and (a.float() - b.float()).abs().max() <= tol
    assert torch.all(got[1].view(B, k, 5)[~mask.unsqueeze(1).expand(B, k, 5)] == 0)


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


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("block", [1, 4, 100])
def test_fused_loss_matches_cross_entropy(smoothing, block):
    torch.manual_seed(0)
    x = torch.randn(13, 7, requires_grad=True)
    w = torch.randn(11, 7, requires_grad=True)
    target = torch.randint(0, 11, (13,))
    ref = F.cross_entropy(x @ w.t(), target, reduction="sum", label_smoothing=smoothing)
    gx, gw = torch.autograd.grad(ref * 1.7, (x, w))
    out = linear_cross_entropy(x, w, target, smoothing, block=block)
    fx, fw = torch.autograd.grad(out * 1.7, (x, w))
    assert torch.allclose(out, ref, rtol=1e-5)
    assert torch.allclose(fx, gx, atol=1e-5) and torch.allclose(fw, gw, atol=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fused_loss_in_bf16_stays_within_what_bf16_allows(smoothing):
    """Under bf16 autocast the three multiplies take bf16 inputs; softmax, loss and gradient sums stay fp32. The
    loss and gradients are within bf16's rounding (8 bits of mantissa, ~0.4%) of the fp32 ones, and the gradients
    come back fp32 for fp32 parameters."""
    torch.manual_seed(0)
    x = torch.randn(300, 64, requires_grad=True)
    w = (0.3 * torch.randn(500, 64)).requires_grad_()
    target = torch.randint(0, 500, (300,))
    ref = F.cross_entropy(x @ w.t(), target, reduction="sum", label_smoothing=smoothing)
    gx, gw = torch.autograd.grad(ref, (x, w))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = linear_cross_entropy(x, w, target, smoothing, block=128)
    fx, fw = torch.autograd.grad(out, (x, w))
    assert out.dtype == fx.dtype == fw.dtype == torch.float32
    assert abs(out.item() - ref.item()) / ref.item() < 5e-3
    for fused, exact in ((fx, gx), (fw, gw)):
        assert ((fused - exact).norm() / exact.norm()).item() < 1e-2
    assert not torch.equal(fw, gw)  # it did take the bf16 path


def rdrop_reference(x1, x2, w, target, smoothing, alpha):
    """R-Drop through autograd: the two passes' mean cross-entropy + alpha / 4 x their symmetric KL, summed."""
    z1, z2 = x1 @ w.t(), x2 @ w.t()
    ce = sum(F.cross_entropy(z, target, reduction="sum", label_smoothing=smoothing) for z in (z1, z2))
    lp1, lp2 = z1.log_softmax(1), z2.log_softmax(1)
    kl = F.kl_div(lp2, lp1, log_target=True, reduction="sum") + F.kl_div(lp1, lp2, log_target=True, reduction="sum")
    return 0.5 * ce + 0.25 * alpha * kl


@pytest.mark.parametrize("smoothing, alpha", [(0.0, 1.0), (0.1, 5.0)])
@pytest.mark.parametrize("block", [1, 4, 100])
def test_rdrop_loss_and_gradients_match_autograd(smoothing, alpha, block):
    torch.manual_seed(0)
    x1, x2 = torch.randn(13, 7, requires_grad=True), torch.randn(13, 7, requires_grad=True)
    w = torch.randn(11, 7, requires_grad=True)
    target = torch.randint(0, 11, (13,))
    ref = rdrop_reference(x1, x2, w, target, smoothing, alpha)
    expected = torch.autograd.grad(ref * 1.7, (x1, x2, w))
    out = linear_rdrop_cross_entropy(x1, x2, w, target, smoothing, alpha, block=block)
    got = torch.autograd.grad(out * 1.7, (x1, x2, w))
    assert torch.allclose(out, ref, rtol=1e-5)
    for fused, exact in zip(got, expected):
        assert torch.allclose(fused, exact, atol=1e-4), (fused - exact).abs().max()


def test_rdrop_loss_in_bf16_stays_within_what_bf16_allows():
    torch.manual_seed(0)
    x1, x2 = torch.randn(300, 64, requires_grad=True), torch.randn(300, 64, requires_grad=True)
    w = (0.3 * torch.randn(500, 64)).requires_grad_()
    target = torch.randint(0, 500, (300,))
    ref = rdrop_reference(x1, x2, w, target, 0.1, 5.0)
    expected = torch.autograd.grad(ref, (x1, x2, w))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = linear_rdrop_cross_entropy(x1, x2, w, target, 0.1, 5.0, block=128)
    got = torch.autograd.grad(out, (x1, x2, w))
    assert abs(out.item() - ref.item()) / ref.item() < 5e-3
    for fused, exact in zip(got, expected):
        assert fused.dtype == torch.float32 and ((fused - exact).norm() / exact.norm()).item() < 1e-2


def test_rdrop_of_two_equal_passes_is_the_plain_loss():
    """The same vectors twice: no divergence, so R-Drop's loss and gradients are the plain ones (per pass)."""
    torch.manual_seed(0)
    x, w = torch.randn(13, 7, requires_grad=True), torch.randn(11, 7)
    target = torch.randint(0, 11, (13,))
    out = linear_rdrop_cross_entropy(x, x, w, target, 0.1, 5.0)
    plain = linear_cross_entropy(x, w, target, 0.1)
    assert torch.allclose(out, plain, rtol=1e-5)
    assert torch.allclose(torch.autograd.grad(out, x)[0], torch.autograd.grad(plain, x)[0], atol=1e-5)


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


def test_byte_dropout_rate_and_scale():
    torch.manual_seed(0)
    drop = ByteDropout(0.3)
    x = torch.ones(200_000)
    y = drop(x)
    assert abs((y == 0).float().mean().item() - 77 / 256) < 0.005
    assert abs(y.mean().item() - 1.0) < 0.01
    # masks differ between calls and between positions
    assert not torch.equal(drop(x), y)
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize("cell, attention, tie, share", [
    ("lstm", "bahdanau", False, False), ("gru", "bahdanau", False, False), ("rnn", "bahdanau", False, False),
    ("lstm", "luong", False, False), ("lstm", "none", False, False), ("lstm", "bahdanau", True, False),
    ("lstm", "bahdanau", True, True)])
def test_each_cell_and_attention_learns_a_tiny_task(cell, attention, tie, share):
    """Reverse sequences of 2-4 symbols: every kind (and tied output embeddings, and one embedding matrix for
    source, target and output) must drive the loss close to zero."""
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, attention=attention, emb_dim=16, hidden_dim=32, dropout=0.0, tie_embeddings=tie,
                      share_embeddings=share)
    model = build_model(cfg, 12, 12)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(1)
    first = last = None
    for _ in range(300):
        n = int(torch.randint(2, 5, (1,), generator=gen))
        src = torch.randint(4, 12, (32, n), generator=gen)
        tgt = src.flip(1)
        tgt_in = torch.cat([torch.full((32, 1), BOS_ID), tgt], 1)
        tgt_out = torch.cat([tgt, torch.full((32, 1), 3)], 1)
        vecs = model(src, torch.full((32,), n), tgt_in)
        loss = linear_cross_entropy(vecs.reshape(-1, vecs.shape[-1]), model.decoder.output.weight,
                                    tgt_out.reshape(-1))
        loss = loss / tgt_out.numel()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        first = loss.item() if first is None else first
        last = loss.item()
    assert first > 2.0 and last < 0.3, (first, last)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers, bidirectional", [(1, True), (2, True), (2, False)])
def test_encoder_equals_packed_sequence_reference(cell, layers, bidirectional):
    """The encoder runs fused kernels chunk by chunk; it must give what nn.LSTM/GRU/RNN on packed sequences
    gives: states, final states and every gradient."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    torch.manual_seed(0)
    enc = make_encoder(layers=layers, cell=cell, bidirectional=bidirectional).double().train()
    lens = torch.tensor([7, 3, 5, 7, 1, 5, 2])
    src = torch.randint(4, V, (7, 7))
    src[torch.arange(7)[None] >= lens[:, None]] = PAD_ID
    out = enc(src, lens)
    packed = pack_padded_sequence(enc.embed(src), lens, batch_first=True, enforce_sorted=False)
    ref_out, ref_final = enc.rnn(packed)
    ref_states, _ = pad_packed_sequence(ref_out, batch_first=True, total_length=7)
    ref_h, ref_c = ref_final if cell == "lstm" else (ref_final, None)
    assert torch.allclose(out.states, ref_states, atol=1e-12)
    assert torch.allclose(out.final_h, enc._join(ref_h), atol=1e-12)
    if cell == "lstm":
        assert torch.allclose(out.final_c, enc._join(ref_c), atol=1e-12)
    weights = list(enc.parameters())
    grads = torch.autograd.grad(out.states.sin().sum() + out.final_h.cos().sum(), weights)
    ref_grads = torch.autograd.grad(ref_states.sin().sum() + enc._join(ref_h).cos().sum(), weights)
    for (name, _), g, r in zip(enc.named_parameters(), grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-10), name


def test_encoder_in_bf16_stays_within_what_bf16_allows():
    """Under bf16 autocast the chunked LSTM encoder's fused kernels (oneDNN on CPU) multiply in bf16: states,
    final states and every (fp32) gradient within 2% (relative norm) of the fp32 encoder. (torch's CPU GRU and
    plain RNN kernels have no autocast rule: those encoders stay fp32 on CPUs; so does the LSTM encoder on a
    CPU whose oneDNN has no bf16 LSTM, e.g. AMD Zen 3.)"""
    from mt.model.encoder import _bf16_lstm_kernel
    torch.manual_seed(0)
    enc = make_encoder(50, 32, 64, layers=2).train()
    lens = torch.randint(1, 13, (16,))
    lens[0] = 12
    src = torch.randint(4, 50, (16, 12))
    src[torch.arange(12)[None] >= lens[:, None]] = PAD_ID
    weights = list(enc.parameters())
    results = []
    for bf16 in (True, False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = enc(src, lens)
        assert out.states.dtype == (torch.bfloat16 if bf16 and _bf16_lstm_kernel() else torch.float32)
        loss = out.states.float().sin().sum() + out.final_h.float().cos().sum()
        results.append((out, torch.autograd.grad(loss, weights)))
    (out, grads), (ref, ref_grads) = results
    relative = lambda a, b: ((a.float() - b).norm() / b.norm()).item()  # noqa: E731
    assert relative(out.states, ref.states) < 0.02 and relative(out.final_h, ref.final_h) < 0.02
    for (name, _), g, r in zip(enc.named_parameters(), grads, ref_grads):
        assert g.dtype == torch.float32 and relative(g, r) < 0.02, name


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fused_decoder_equals_the_step_modules(dropout):
    """Training uses the hand-written fused loop (1-layer LSTM + Bahdanau); its output and every gradient must
    equal autograd through the step-by-step modules, dropout masks included."""
    model = make_model(dropout=dropout).double().train()
    src, lens = padded_batch()
    tgt_in = torch.randint(4, V, (B, 6))
    weights = torch.linspace(-1, 1, B * 6 * H, dtype=torch.float64).view(B, 6, H)
    results = []
    for fused in (True, False):
        model.decoder.fused = fused
        torch.manual_seed(7)  # the same dropout masks for both
        out = model(src, lens, tgt_in)
        assert (out.grad_fn.name() == "_LstmAttentionLoopBackward") == fused
        results.append((out, torch.autograd.grad((out.sin() * weights).sum(), list(model.parameters()),
                                                 allow_unused=True)))
    (out, grads), (ref_out, ref_grads) = results
    assert torch.allclose(out, ref_out, atol=1e-12)
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads):
        assert (g is None) == (r is None), name
        assert g is None or torch.allclose(g, r, atol=1e-10), name


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fused_decoder_in_bf16_stays_within_what_bf16_allows(dropout):
    """Under bf16 autocast the fused loop multiplies in bf16 (8 bits of mantissa, ~0.4% per rounding) and keeps
    the cell state, softmax and gradient sums fp32: the output and every gradient are within 2% (relative norm)
    of the fp32 step modules. Autocast through the step modules is further off (about 25% for the attention
    query weight, whose gradient it sums over the steps in bf16)."""
    torch.manual_seed(0)
    batch, src_len, tgt_len, hidden = 16, 12, 9, 64
    model = build_model(ModelConfig(emb_dim=32, hidden_dim=hidden, dropout=dropout, tie_embeddings=False,
                                    share_embeddings=False), 50, 50).train()
    lens = torch.randint(2, src_len + 1, (batch,))
    src = torch.randint(4, 50, (batch, src_len))
    src[torch.arange(src_len)[None] >= lens[:, None]] = PAD_ID
    tgt_in = torch.randint(4, 50, (batch, tgt_len))
    weights = torch.randn(batch, tgt_len, hidden)
    results = []
    for fused, bf16 in ((True, True), (False, False)):
        model.decoder.fused = fused
        torch.manual_seed(7)  # the same dropout masks for both
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(src, lens, tgt_in)
        assert (out.grad_fn.name() == "_LstmAttentionLoopBackward") == fused
        results.append((out, torch.autograd.grad((out.sin() * weights).sum(), list(model.parameters()),
                                                 allow_unused=True)))  # the output layer is not used
    (out, grads), (ref_out, ref_grads) = results
    relative = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    assert out.dtype == torch.float32 and relative(out, ref_out) < 0.02
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads):
        assert (g is None) == (r is None), name
        assert g is None or (g.dtype == torch.float32 and relative(g, r) < 0.02), name


def test_fused_decoder_refuses_a_backward_after_another_forward():
    model = make_model().train()
    src, lens = padded_batch()
    tgt_in = torch.randint(4, V, (B, 6))
    first = model(src, lens, tgt_in)
    model(src, lens, tgt_in)  # overwrites the workspace the first pass saved its activations in
    with pytest.raises(RuntimeError, match="another forward pass before this backward"):
        first.sum().backward()


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-15), (torch.float32, 3e-7)])
def test_tanh_through_sigmoid_matches_torch_tanh_values_and_gradients(dtype, tol):
    from mt.model.activations import tanh, tanh_
    x = torch.cat([torch.linspace(-12, 12, 2001), torch.randn(1000) * 1e-4]).to(dtype)  # tails and near zero
    assert torch.equal(tanh(x), torch.sigmoid(x * 2) * 2 - 1)  # the sigmoid route is the one taken
    want = torch.tanh(x.double())
    assert (tanh(x).double() - want).abs().max() <= tol
    out = torch.empty_like(x)
    assert tanh(x, out=out) is out and (out.double() - want).abs().max() <= tol
    y = x.clone()
    assert tanh_(y) is y and (y.double() - want).abs().max() <= tol
    assert tanh(torch.tensor([torch.inf, -torch.inf], dtype=dtype)).tolist() == [1.0, -1.0]
    leaf = x.clone().requires_grad_()
    tanh(leaf).sum().backward()  # differentiable: autograd goes through the sigmoid
    assert (leaf.grad.double() - (1 - want.square())).abs().max() <= 4 * tol


def test_tanh_keeps_torch_tanh_for_bf16():
    from mt.model.activations import tanh, tanh_
    x = torch.linspace(-4, 4, 1001).bfloat16()  # the identity would double bf16's rounding error
    assert torch.equal(tanh(x), torch.tanh(x)) and torch.equal(tanh_(x.clone()), torch.tanh(x))


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
