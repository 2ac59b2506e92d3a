"""The fast backend's parts against what they replace, on tiny odd sizes: the fused loss and R-Drop against
autograd, the chunked encoder against packed sequences, the fused decoder loop against its own step loop with the
same dropout masks, blocked search attention, tanh through sigmoid, cheap dropout. (tests/test_backends.py holds
the whole fast model against the reference.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mt.config import ModelConfig
from mt.data.tokenizer import PAD_ID
from mt.fast import FastSeq2Seq
from mt.fast.attention import search_scores
from mt.fast.dropout import ByteDropout
from mt.fast.encoder import FastEncoder, bf16_lstm_kernel
from mt.fast.loss import linear_cross_entropy, linear_rdrop_cross_entropy
from mt.model.attention import BahdanauAttention, masked_softmax

V, E, H, B = 23, 10, 14, 3
CELLS = ["lstm", "gru", "rnn"]


def make_model(dropout=0.0, emb=E, hidden=H, vocab=V) -> FastSeq2Seq:
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=emb, hidden_dim=hidden, dropout=dropout, tie_embeddings=False, share_embeddings=False)
    return FastSeq2Seq.build(cfg, vocab, vocab + 2).eval()


def make_encoder(vocab=V, emb=E, hidden=H, **sizes) -> FastEncoder:
    """A fast encoder from a ModelConfig of these sizes (and ``layers``, ``cell``, ``bidirectional``), no dropout."""
    return FastEncoder(ModelConfig(emb_dim=emb, hidden_dim=hidden, dropout=0.0, **sizes), vocab)


def teacher_forced(model: FastSeq2Seq, src, lens, tgt_in, fused: bool) -> torch.Tensor:
    """The fast decoder's teacher-forced pass through its fused loop or its step loop, with the same dropout
    masks (drawn after one seed)."""
    torch.manual_seed(7)
    ctx, state = model.encode(src, lens)
    x_proj, drops = model.decoder.teacher_inputs(tgt_in)
    run = model.decoder.fused_steps if fused else model.decoder.steps
    return run(x_proj, drops, state, ctx)


def padded_batch():
    lens = torch.tensor([5, 2, 4])
    src = torch.randint(4, V, (B, 5))
    for i, n in enumerate(lens):
        src[i, n:] = PAD_ID
    return src, lens


def rdrop_reference(x1, x2, w, target, smoothing, alpha):
    """R-Drop through autograd: the two passes' mean cross-entropy + alpha / 4 x their symmetric KL, summed."""
    z1, z2 = x1 @ w.t(), x2 @ w.t()
    ce = sum(F.cross_entropy(z, target, reduction="sum", label_smoothing=smoothing) for z in (z1, z2))
    lp1, lp2 = z1.log_softmax(1), z2.log_softmax(1)
    kl = F.kl_div(lp2, lp1, log_target=True, reduction="sum") + F.kl_div(lp1, lp2, log_target=True, reduction="sum")
    return 0.5 * ce + 0.25 * alpha * kl


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("block_bytes", [1, 10 ** 9])
def test_search_attention_in_blocks_equals_the_training_form(dtype, tol, block_bytes):
    """Search makes the energies a block of sentences at a time (1 byte: a block per sentence), tanh folded into a
    sigmoid in fp32: the same attention weights as the reference module, K rows per sentence, padding masked."""
    torch.manual_seed(0)
    att, k = BahdanauAttention(H, H, 8), 4
    states = torch.randn(B, 5, H)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    query = torch.randn(B * k, H) * 3
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        keys = att.keys(states)
        _, want = att(query, keys, states, mask)  # (B*K, S)
        q = att.query_layer(query).view(B, k, 1, 8)
        got = masked_softmax(search_scores(keys, q, att.energy.weight[0], block_bytes), mask.unsqueeze(1))
    assert got.shape == (B, k, 5) and (got.flatten(0, 1).float() - want.float()).abs().max() <= tol
    assert torch.all(got[~mask.unsqueeze(1).expand(B, k, 5)] == 0)


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


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers, bidirectional", [(1, True), (2, True), (2, False)])
def test_encoder_equals_packed_sequence_reference(cell, layers, bidirectional):
    """The fast encoder's training pass runs fused kernels chunk by chunk; it must give what the reference's
    nn.LSTM/GRU/RNN on packed sequences gives: states, final states and every gradient."""
    from mt.model.encoder import Encoder

    torch.manual_seed(0)
    enc = make_encoder(layers=layers, cell=cell, bidirectional=bidirectional).double().train()
    lens = torch.tensor([7, 3, 5, 7, 1, 5, 2])
    src = torch.randint(4, V, (7, 7))
    src[torch.arange(7)[None] >= lens[:, None]] = PAD_ID
    out = enc(src, lens)
    ref = Encoder.forward(enc, src, lens)  # the reference pass on the same module
    assert torch.allclose(out.states, ref.states, atol=1e-12)
    assert torch.allclose(out.final_h, ref.final_h, atol=1e-12)
    if cell == "lstm":
        assert torch.allclose(out.final_c, ref.final_c, atol=1e-12)
    weights = list(enc.parameters())
    grads = torch.autograd.grad(out.states.sin().sum() + out.final_h.cos().sum(), weights)
    ref_grads = torch.autograd.grad(ref.states.sin().sum() + ref.final_h.cos().sum(), weights)
    for (name, _), g, r in zip(enc.named_parameters(), grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-10), name


def test_encoder_in_bf16_stays_within_what_bf16_allows():
    """Under bf16 autocast the chunked LSTM encoder's fused kernels (oneDNN on CPU) multiply in bf16: states,
    final states and every (fp32) gradient within 2% (relative norm) of the fp32 encoder. (torch's CPU GRU and
    plain RNN kernels have no autocast rule: those encoders stay fp32 on CPUs; so does the LSTM encoder on a
    CPU whose oneDNN has no bf16 LSTM, e.g. AMD Zen 3.)"""
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
        assert out.states.dtype == (torch.bfloat16 if bf16 and bf16_lstm_kernel() else torch.float32)
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
    equal autograd through the fast decoder's step loop, dropout masks included."""
    model = make_model(dropout=dropout).double().train()
    src, lens = padded_batch()
    tgt_in = torch.randint(4, V, (B, 6))
    weights = torch.linspace(-1, 1, B * 6 * H, dtype=torch.float64).view(B, 6, H)
    results = []
    for fused in (True, False):
        out = teacher_forced(model, src, lens, tgt_in, fused)
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
    model = make_model(dropout, 32, hidden, 50).train()
    lens = torch.randint(2, src_len + 1, (batch,))
    src = torch.randint(4, 50, (batch, src_len))
    src[torch.arange(src_len)[None] >= lens[:, None]] = PAD_ID
    tgt_in = torch.randint(4, 50, (batch, tgt_len))
    weights = torch.randn(batch, tgt_len, hidden)
    results = []
    for fused, bf16 in ((True, True), (False, False)):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = teacher_forced(model, src, lens, tgt_in, fused)
        assert (out.grad_fn.name() == "_LstmAttentionLoopBackward") == fused
        results.append((out, torch.autograd.grad((out.sin() * weights).sum(), list(model.parameters()),
                                                 allow_unused=True)))  # the output layer is not used
    (out, grads), (ref_out, ref_grads) = results
    relative = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    assert out.dtype == torch.float32 and relative(out, ref_out) < 0.02
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads):
        assert (g is None) == (r is None), name
        assert g is None or (g.dtype == torch.float32 and relative(g, r) < 0.02), name


def test_fused_decoder_memory_does_not_grow_with_target_times_source_length():
    """The fused loop keeps per-step activations (T, B, n) and one step's attention energies (S, B, A), made again
    in the backward pass: its workspaces stay below what the energies of all steps, (T, S, B, A) in fp32, would
    take alone (the largest item of a training step's memory before they were made again)."""
    torch.manual_seed(0)
    batch, src_len, tgt_len, hidden = 4, 60, 60, 16
    model = make_model(0.0, 8, hidden, 30).train()
    src = torch.randint(4, 30, (batch, src_len))
    tgt_in = torch.randint(4, 30, (batch, tgt_len))
    out = teacher_forced(model, src, torch.full((batch,), src_len), tgt_in, fused=True)
    out.sum().backward()
    all_energies = tgt_len * src_len * batch * hidden * 4  # bytes; the attention size is the hidden size
    forward, backward = (space.buffer.numel() for space in model.decoder._workspaces)
    assert forward < all_energies / 2 and backward < all_energies / 2


def test_fused_decoder_backward_writes_its_gate_gradients_over_the_gate_activations():
    """The backward pass's own workspace holds the gradients of the attentional vectors, the queries and the keys,
    but not the gate gradients (T, B, 4H), which overwrite the activations they come from: in fp32 it is smaller
    than the gate activations alone."""
    batch, src_len, tgt_len, hidden = 4, 5, 40, 16
    model = make_model(0.0, 8, hidden, 30).train()
    out = teacher_forced(model, torch.randint(4, 30, (batch, src_len)), torch.full((batch,), src_len),
                         torch.randint(4, 30, (batch, tgt_len)), fused=True)
    out.sum().backward()
    gate_activations = tgt_len * batch * 4 * hidden * 4  # bytes, fp32
    assert model.decoder._workspaces[1].buffer.numel() < gate_activations


def test_fused_decoder_refuses_a_backward_after_another_forward():
    model = make_model().train()
    src, lens = padded_batch()
    tgt_in = torch.randint(4, V, (B, 6))
    first = model(src, lens, tgt_in)
    model(src, lens, tgt_in)  # overwrites the workspace the first pass saved its activations in
    with pytest.raises(RuntimeError, match="another forward pass before this backward"):
        first.sum().backward()


def test_fused_decoder_refuses_a_second_backward_through_one_forward():
    model = make_model().train()
    src, lens = padded_batch()
    out = model(src, lens, torch.randint(4, V, (B, 6)))
    out.sum().backward(retain_graph=True)  # the gate gradients now lie where the gate activations were
    with pytest.raises(RuntimeError, match="backward pass ran twice"):
        out.sum().backward()


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-15), (torch.float32, 3e-7)])
def test_tanh_through_sigmoid_matches_torch_tanh_values_and_gradients(dtype, tol):
    from mt.fast.activations import tanh, tanh_
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
    from mt.fast.activations import tanh, tanh_
    x = torch.linspace(-4, 4, 1001).bfloat16()  # the identity would double bf16's rounding error
    assert torch.equal(tanh(x), torch.tanh(x)) and torch.equal(tanh_(x.clone()), torch.tanh(x))


