"""The teacher-forced decoder loop (one LSTM layer, additive attention, input feeding) as one autograd function
with a hand-written backward pass. Numbers and gradients equal the reference decoder's (tests/test_backends.py).

Why: autograd differentiates the loop step by step, so every step pays a weight-gradient multiply with only B
rows, then adds it into the weight's gradient (an 8 MB ``add_`` per step for the LSTM weight), plus the
bookkeeping of some thirty graph nodes. Here the backward loop only carries activation gradients; the weight
gradients of all T steps are four large multiplies at the end, where the CPU runs near its peak rate.
The activations kept for the backward pass live in a ``Workspace`` that is reused from batch to batch: freshly
allocated memory of that size costs page faults at every step. The attention energies are not kept: at (T, S, B, A)
they would be most of the workspace (hundreds of MB for a batch of 4,000 tokens, growing with sentence length);
the backward pass makes each step's energies again from the queries (T, B, A), in one (S, B, A) buffer that stays
in the cache (docs/results.md, "The energies made again").

The step, for a batch of B sentences, S source positions, hidden size H and attention size A:
    gates  = x_t + [feed_{t-1}; h_{t-1}] @ W^T              (B, 4H)  x_t: embedding projection plus biases
    c_t    = sig(f) * c_{t-1} + sig(i) * tanh(g);  h_t = sig(o) * tanh(c_t)
    E_t    = tanh(keys + h_t @ Wq^T)                        (B, S, A)
    alpha  = masked softmax(E_t @ v)                        (B, S)
    ctx_t  = alpha @ states                                 (B, H)
    feed_t = tanh((drop_t * [h_t; ctx_t]) @ Wc^T)           (B, H)  the attentional vector, the output

bf16 (``low=torch.bfloat16``, what the decoder passes under bf16 autocast): every matrix multiply reads bf16
operands (weights cast once per call; h_t, [feed; h], [h; ctx] and the queries are stored in bf16, as multiplies
made them or are all that read them) and accumulates in fp32 inside the kernel; the cell state, the gates, the
attention energies and softmax, every gradient carried from step to step and the gradients returned for the fp32
weights stay fp32.

The energies' tanh over (S, B, A) at every step is the largest element-wise cost, so the loop works with
s = sigmoid(2x) instead (x = keys + q_t, tanh(x) = 2s - 1): the scores v^T tanh(x) = (2v)^T s - sum(v), and the
constant -sum(v) drops out of the softmax; d tanh(x)/dx = 4 s (1 - s); the gradient of v sums d_score * (2s - 1).
One pass (the sigmoid) where tanh through sigmoid takes four, and exact in real numbers on every device.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from mt.fast.activations import half_tanh_of_sum, tanh, tanh_
from mt.profiling import ATTENTION, DECODER_LSTM, span

__all__ = ["Workspace", "fused_lstm_attention_loop"]


class Workspace:
    """One flat byte buffer handed out as typed views, reused by every call. ``generation`` counts the calls and
    the backward passes that wrote over what a forward pass saved, so that a backward pass can tell when its saved
    activations are gone (and refuse to run)."""

    ALIGN = 64  # bytes: every view starts on a cache line

    def __init__(self):
        self.buffer: torch.Tensor | None = None
        self.generation = 0

    def take(self, device: torch.device, *specs: tuple[tuple[int, ...], torch.dtype]) -> list[torch.Tensor]:
        """specs: (shape, dtype) per view -> uninitialised views, in order."""
        sizes = [-(-math.prod(shape) * dtype.itemsize // self.ALIGN) * self.ALIGN for shape, dtype in specs]
        buf = self.buffer
        if buf is None or buf.numel() < sum(sizes) or buf.device != device:
            self.buffer = buf = None  # drop both references first: never two buffers alive at once
            self.buffer = buf = torch.empty(int(sum(sizes) * 1.05), dtype=torch.uint8, device=device)
        self.generation += 1
        views, start = [], 0
        for (shape, dtype), size in zip(specs, sizes):
            n = math.prod(shape) * dtype.itemsize
            views.append(buf[start:start + n].view(dtype).view(shape))
            start += size
        return views


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b with a cast to b's dtype (the multiply dtype); the product comes back in a's dtype."""
    return (a.to(b.dtype) @ b).to(a.dtype)


def _add_mm_(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """acc += a @ b, the multiply in b's dtype, the sum in acc's."""
    return acc.addmm_(a, b) if b.dtype == acc.dtype else acc.add_(a.to(b.dtype) @ b)


class _LstmAttentionLoop(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_proj, h, c, feed, keys, states, mask, w, w_query, v, w_combine, drop, spaces, low):
        """x_proj (T, B, 4H) time-major (each step's slice contiguous), h, c, feed (B, H), keys (B, S, A),
        states (B, S, H), mask (B, S) bool, w (4H, 2H) = [W_feed | W_hh], w_query (A, H), v (1, A),
        w_combine (H, 2H), drop (T, B, 2H) or None, spaces: two Workspaces (forward, backward),
        low: the multiply dtype (bf16) or None (the weights' own) -> attentional vectors (B, T, H)."""
        steps, batch, _ = x_proj.shape
        hidden = h.shape[1]
        src_len, att_dim = keys.shape[1], keys.shape[2]
        full = w.dtype  # the cell state, gates, energies, softmax, gradients: fp32 (fp64 in tests)
        mm = low or full  # what the multiplies read
        w, w_query, w_combine, states = w.to(mm), w_query.to(mm), w_combine.to(mm), states.to(mm)
        blocked = ~mask  # (B, S)
        v2 = (v.squeeze(0) * 2).to(full)  # (A,): the scores are (2v)^T s, s = sigmoid(2 (keys + q))
        joined, acts, cells, tanh_c, h_all, combined, queries, alphas, keys2, energy = spaces[0].take(
            x_proj.device,
            ((steps, batch, 2 * hidden), mm),  # joined: [feed_{t-1}; h_{t-1}]
            ((steps, batch, 4 * hidden), full),  # acts: sig(i), sig(f), tanh(g), sig(o)
            ((steps + 1, batch, hidden), full),  # cells: c_{-1} = c, c_0, ..., c_{T-1}
            ((steps, batch, hidden), full),  # tanh_c: tanh(c_t)
            ((steps, batch, hidden), mm),  # h_all: h_t
            ((steps, batch, 2 * hidden), mm),  # combined: drop_t * [h_t; ctx_t]
            ((steps, batch, att_dim), mm),  # queries: q_t = h_t @ Wq^T
            ((steps, batch, src_len), full),  # alphas (T, B, S)
            ((src_len, batch, att_dim), full),  # keys2: 2 * keys, (S, B, A): adding q (B, A) is faster this way
            ((src_len, batch, att_dim), full),  # energy: one step's s, reused by every step
        )
        torch.mul(keys.transpose(0, 1), 2, out=keys2)
        ctx.spaces, ctx.generation, ctx.x_dtype = spaces, spaces[0].generation, x_proj.dtype
        feeds = x_proj.new_empty(steps, batch, hidden, dtype=full)  # the output: not in the workspace
        cells[0] = c
        for t in range(steps):
            with span(DECODER_LSTM):
                joined[t, :, :hidden] = feed
                joined[t, :, hidden:] = h
                if low:  # the sum in fp32, one step at a time (a whole fp32 copy of x_proj costs page faults)
                    gates = acts[t].copy_(x_proj[t]).add_(joined[t] @ w.t())  # (B, 4H)
                else:
                    gates = torch.addmm(x_proj[t], joined[t], w.t(), out=acts[t])  # (B, 4H)
                gates[:, :2 * hidden].sigmoid_()
                tanh_(gates[:, 2 * hidden:3 * hidden])
                gates[:, 3 * hidden:].sigmoid_()
                i, f, g, o = gates.chunk(4, dim=1)
                c = torch.addcmul(f * cells[t], i, g, out=cells[t + 1])  # (B, H)
                h = torch.mul(o, tanh(c, out=tanh_c[t]), out=h_all[t])  # (B, H)
            with span(ATTENTION):
                torch.mm(h, w_query.t(), out=queries[t])  # (B, A)
                s = half_tanh_of_sum(keys2, queries[t], energy)  # (S, B, A)
                scores = (s @ v2).t().masked_fill(blocked, torch.finfo(full).min)  # (B, S), shifted by a constant
                alpha = torch.softmax(scores, dim=1)  # (B, S)
                alphas[t] = alpha
                combined[t, :, :hidden] = h
                combined[t, :, hidden:] = torch.bmm(alpha.unsqueeze(1).to(mm), states).squeeze(1)  # context (B, H)
                if drop is not None:
                    combined[t].mul_(drop[t])
                feed = tanh((combined[t] @ w_combine.t()).to(full), out=feeds[t])  # (B, H)
        ctx.save_for_backward(joined, acts, cells, tanh_c, h_all, combined, queries, keys2, energy, alphas, feeds,
                              states, w, w_query, v, w_combine, drop)
        return feeds.transpose(0, 1)  # (B, T, H)

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.spaces[0].generation != ctx.generation:
            raise RuntimeError("the fused decoder's saved activations were overwritten: it ran another forward pass "
                               "before this backward pass, or its backward pass ran twice on one forward pass; use "
                               "model.backend=reference for this use")
        ctx.spaces[0].generation += 1  # this backward pass writes gradients over the saved activations
        saved = _Saved(*ctx.saved_tensors)
        g = _Gradients(saved, ctx.spaces[1], ctx.x_dtype)
        grad_out = grad_out.transpose(0, 1)  # (T, B, H)
        for t in reversed(range(saved.feeds.shape[0])):
            with span(ATTENTION):
                d_h = _attention_step_back(t, saved, g, grad_out[t])
            with span(DECODER_LSTM):
                _lstm_step_back(t, saved, g, d_h)
        grad_w, grad_w_query, grad_v, grad_w_combine, grad_states = _weight_gradients(saved, g)
        # (T, B, 4H), contiguous: the input projection's backward needs no copy, nor (in x_proj's dtype) autograd
        grad_x = g.d_gates if ctx.x_dtype == saved.feeds.dtype else g.grad_x.copy_(g.d_gates)
        return (grad_x, g.d_h_next, g.d_c, g.d_feed, g.d_keys.transpose(0, 1), grad_states, None, grad_w,
                grad_w_query, grad_v, grad_w_combine, None, None, None)


class _Saved(NamedTuple):
    """What the forward pass saved, by name (shapes in ``_LstmAttentionLoop.forward``)."""
    joined: torch.Tensor
    acts: torch.Tensor
    cells: torch.Tensor
    tanh_c: torch.Tensor
    h_all: torch.Tensor
    combined: torch.Tensor
    queries: torch.Tensor
    keys2: torch.Tensor
    energy: torch.Tensor  # (S, B, A): the forward pass's one-step buffer, which the backward pass reuses
    alphas: torch.Tensor
    feeds: torch.Tensor
    states: torch.Tensor
    w: torch.Tensor
    w_query: torch.Tensor
    v: torch.Tensor
    w_combine: torch.Tensor
    drop: torch.Tensor | None


class _Gradients:
    """The backward pass's buffers: per-step gradients kept for the weight gradients at the end, and what one
    step hands to the step before it. Two of them take the place of forward activations that the backward pass
    has read for the last time: step t's gate gradients overwrite its gate activations (acts[t]), and step t's
    context gradient overwrites c_t (cells[t + 1]), which only step t + 1 read. Each step's energies are made
    again in the forward pass's one-step buffer, and their gradient in place of them. The rest are in the
    backward Workspace."""

    def __init__(self, s: _Saved, space: Workspace, x_dtype: torch.dtype):
        full = s.feeds.dtype
        self.d_gates = s.acts  # (T, B, 4H): gradients of the gate pre-activations, in place of the activations
        self.d_ctx = s.cells[1:]  # (T, B, H): gradients of the contexts, in place of c_0 ... c_{T-1}
        self.grad_x, self.d_pre_combine, self.d_query, self.d_keys = space.take(
            s.feeds.device,
            (s.acts.shape if x_dtype != full else (0,), x_dtype),  # grad_x: d_gates in x_proj's dtype
            (s.feeds.shape, full),  # d_pre_combine (T, B, H)
            (s.queries.shape, full),  # d_query (T, B, A)
            (s.keys2.shape, full),  # d_keys (S, B, A), summed over the steps
        )
        self.d_keys.zero_()
        self.grad_v = s.feeds.new_zeros(s.v.shape)  # (1, A)
        self.v4 = s.v.squeeze(0) * 4  # (A,): d tanh(x) / dx = 4 s (1 - s)
        self.d_feed = torch.zeros_like(s.feeds[0])  # (B, H): from the next step's input
        self.d_h_next = torch.zeros_like(s.feeds[0])  # (B, H): from the next step's recurrence
        self.d_c = torch.zeros_like(s.feeds[0])  # (B, H)


def _attention_step_back(t: int, s: _Saved, g: _Gradients, grad_out: torch.Tensor) -> torch.Tensor:
    """Step t's attentional vector, attention and query, backwards: grad_out (B, H) of feed_t -> the gradient
    of h_t (B, H), from the output, the next step's recurrence and the query."""
    hidden = s.feeds.shape[2]
    d_pre = torch.add(grad_out, g.d_feed).mul_(1 - s.feeds[t].square())  # (B, H) through tanh
    g.d_pre_combine[t] = d_pre
    d_combined = _mm(d_pre, s.w_combine)  # (B, 2H)
    if s.drop is not None:
        d_combined.mul_(s.drop[t])
    d_h = d_combined[:, :hidden].add_(g.d_h_next)  # (B, H)
    g.d_ctx[t] = d_combined[:, hidden:]
    alpha = s.alphas[t]  # (B, S)
    d_alpha = torch.bmm(s.states, g.d_ctx[t].unsqueeze(2).to(s.states.dtype)).squeeze(2).to(s.feeds.dtype)  # (B, S)
    d_score = d_alpha.sub_((alpha * d_alpha).sum(dim=1, keepdim=True)).mul_(alpha).t()  # (S, B) softmax backward
    energy = half_tanh_of_sum(s.keys2, s.queries[t], s.energy)  # (S, B, A): the forward pass's s, made again
    # v's gradient: sum over S, B of d_score * tanh(x) = 2 d_score . s - sum(d_score)
    g.grad_v.addmm_(d_score.reshape(1, -1), energy.view(-1, energy.shape[2]), alpha=2).sub_(d_score.sum())
    # in place of s: 4 * d_score * v * s (1 - s), the gradient of x = keys + q_t (S, B, A)
    d_energy = energy.addcmul_(energy, energy, value=-1).mul_(d_score.unsqueeze(2)).mul_(g.v4)
    g.d_keys.add_(d_energy)
    torch.sum(d_energy, dim=0, out=g.d_query[t])  # (B, A)
    return _add_mm_(d_h, g.d_query[t], s.w_query)  # (B, H)


def _lstm_step_back(t: int, s: _Saved, g: _Gradients, d_h: torch.Tensor) -> None:
    """Step t's LSTM cell backwards from d_h (B, H): its gate gradients (g.d_gates[t], written over the gate
    activations acts[t] as each is read for the last time), and the gradients of c_{t-1}, h_{t-1} and feed_{t-1}
    for the step before it."""
    hidden = s.feeds.shape[2]
    i, f, gate, o = s.acts[t].chunk(4, dim=1)  # (B, H) each; they become d_i, d_f, d_g, d_o
    tanh_c = s.tanh_c[t]
    g.d_c.addcmul_(d_h * o, 1 - tanh_c.square())  # (B, H): dL/dc_t, from h_t and from c_{t+1}
    o.mul_(1 - o).mul_(d_h).mul_(tanh_c)  # d_o = d_h * tanh(c_t) * o (1 - o)
    d_c_i = g.d_c * i  # (B, H)
    i.mul_(1 - i).mul_(gate).mul_(g.d_c)  # d_i = d_c * g * i (1 - i)
    gate.square_().neg_().add_(1).mul_(d_c_i)  # d_g = d_c * i * (1 - g^2)
    d_c_prev = g.d_c * f  # to c_{t-1}
    f.mul_(1 - f).mul_(g.d_c).mul_(s.cells[t])  # d_f = d_c * c_{t-1} * f (1 - f)
    g.d_c = d_c_prev
    d_joined = _mm(g.d_gates[t], s.w)  # (B, 2H)
    g.d_feed, g.d_h_next = d_joined[:, :hidden], d_joined[:, hidden:]


def _weight_gradients(s: _Saved, g: _Gradients):
    """The gradients of the weights and of the encoder states, summed over all steps in a few large multiplies
    (v's was summed step by step, with the energies made again): -> W (4H, 2H), W_query (A, H), v (1, A),
    W_combine (H, 2H), states (B, S, H)."""
    flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731  (T, B, n) -> (T * B, n)
    with span(DECODER_LSTM):
        grad_w = _mm(flat(g.d_gates).t(), flat(s.joined))  # (4H, 2H)
    with span(ATTENTION):
        grad_w_combine = _mm(flat(g.d_pre_combine).t(), flat(s.combined))  # (H, 2H)
        grad_w_query = _mm(flat(g.d_query).t(), flat(s.h_all))  # (A, H)
        # d_states: sum over steps of alpha_t (B, S) x d_ctx_t (B, H) -> (B, S, H) in one batched multiply
        grad_states = torch.bmm(s.alphas.permute(1, 2, 0).to(s.states.dtype),
                                g.d_ctx.transpose(0, 1).to(s.states.dtype))  # (B, S, T) @ (B, T, H)
    return grad_w, grad_w_query, g.grad_v, grad_w_combine, grad_states


def fused_lstm_attention_loop(x_proj, h, c, feed, keys, states, mask, w, w_query, v, w_combine, drop=None,
                              spaces: tuple[Workspace, Workspace] | None = None, low: torch.dtype | None = None):
    """See the module doc; returns the attentional vectors (B, T, H). ``spaces``: workspaces to reuse across
    calls (the decoder keeps a pair); fresh ones when None. ``low``: bf16 to multiply in bf16 (call it with
    autocast off). The gradients for ``x_proj`` and ``keys`` are views of the backward workspace, valid until the
    next call: fine for computed tensors (autograd hands them on at once), not for leaf tensors."""
    if spaces is None or any(x.is_leaf and x.requires_grad for x in (x_proj, keys)):
        spaces = (Workspace(), Workspace())
    return _LstmAttentionLoop.apply(x_proj, h, c, feed, keys, states, mask, w, w_query, v, w_combine, drop, spaces,
                                    low)
