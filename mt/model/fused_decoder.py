"""The teacher-forced decoder loop (one LSTM layer, additive attention, input feeding) as one autograd function
with a hand-written backward pass. Numbers and gradients equal the step-by-step modules (tests/test_model.py).

Why: autograd differentiates the loop step by step, so every step pays a weight-gradient multiply with only B
rows, then adds it into the weight's gradient (an 8 MB ``add_`` per step for the LSTM weight), plus the
bookkeeping of some thirty graph nodes. Here the backward loop only carries activation gradients; the weight
gradients of all T steps are four large multiplies at the end, where the CPU runs near its peak rate.
The activations kept for the backward pass (about 400 MB for a 4k-token batch) live in a ``Workspace`` that
is reused from batch to batch: freshly allocated memory of that size costs about 60 ms of page faults per step.

The step, for a batch of B sentences, S source positions, hidden size H and attention size A:
    gates  = x_t + [feed_{t-1}; h_{t-1}] @ W^T              (B, 4H)  x_t: embedding projection plus biases
    c_t    = sig(f) * c_{t-1} + sig(i) * tanh(g);  h_t = sig(o) * tanh(c_t)
    E_t    = tanh(keys + h_t @ Wq^T)                        (B, S, A)
    alpha  = masked softmax(E_t @ v)                        (B, S)
    ctx_t  = alpha @ states                                 (B, H)
    feed_t = tanh((drop_t * [h_t; ctx_t]) @ Wc^T)           (B, H)  the attentional vector, the output

bf16 (``low=torch.bfloat16``, what the decoder passes under bf16 autocast): every matrix multiply reads bf16
operands (weights cast once per call; h_t, [feed; h] and [h; ctx] are stored in bf16, since multiplies are all
that read them) and accumulates in fp32 inside the kernel; the cell state, the gates, the attention energies and
softmax, every gradient carried from step to step and the gradients returned for the fp32 weights stay fp32.

tanh is computed as 2 * sigmoid(2x) - 1 (mt.model.activations): torch's CPU tanh kernel is several times
slower than its sigmoid, and the energies' tanh over (S, B, A) at every step was the largest element-wise cost.
"""

from __future__ import annotations

import math

import torch

from mt.model.activations import tanh, tanh_
from mt.profiling import ATTENTION, DECODER_LSTM, span

__all__ = ["Workspace", "fused_lstm_attention_loop"]


class Workspace:
    """One flat byte buffer handed out as typed views, reused by every call. ``generation`` counts the calls, so
    that a backward pass can tell when a newer forward pass has overwritten what it saved (and refuse to run)."""

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
        full = w.dtype  # the cell state, gates, energies, softmax, gradients: fp32 (fp64 in tests)
        mm = low or full  # what the multiplies read
        w, w_query, w_combine, states = w.to(mm), w_query.to(mm), w_combine.to(mm), states.to(mm)
        blocked = ~mask  # (B, S)
        # (S, B, A): adding the query (B, A) is twice as fast this way
        keys = torch.empty((keys.shape[1], batch, keys.shape[2]), dtype=full, device=keys.device).copy_(
            keys.transpose(0, 1))
        joined, acts, cells, tanh_c, h_all, combined, energies, alphas = spaces[0].take(
            x_proj.device,
            ((steps, batch, 2 * hidden), mm),  # joined: [feed_{t-1}; h_{t-1}]
            ((steps, batch, 4 * hidden), full),  # acts: sig(i), sig(f), tanh(g), sig(o)
            ((steps + 1, batch, hidden), full),  # cells: c_{-1} = c, c_0, ..., c_{T-1}
            ((steps, batch, hidden), full),  # tanh_c: tanh(c_t)
            ((steps, batch, hidden), mm),  # h_all: h_t
            ((steps, batch, 2 * hidden), mm),  # combined: drop_t * [h_t; ctx_t]
            ((steps, *keys.shape), full),  # energies (T, S, B, A)
            ((steps, batch, keys.shape[0]), full),  # alphas (T, B, S)
        )
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
                energy = tanh_(torch.add(keys, h @ w_query.t(), out=energies[t]))  # (S, B, A)
                scores = (energy @ v.squeeze(0)).t().masked_fill(blocked, torch.finfo(energy.dtype).min)  # (B, S)
                alpha = torch.softmax(scores, dim=1)  # (B, S)
                alphas[t] = alpha
                combined[t, :, :hidden] = h
                combined[t, :, hidden:] = torch.bmm(alpha.unsqueeze(1).to(mm), states).squeeze(1)  # context (B, H)
                if drop is not None:
                    combined[t].mul_(drop[t])
                feed = tanh((combined[t] @ w_combine.t()).to(full), out=feeds[t])  # (B, H)
        ctx.save_for_backward(joined, acts, cells, tanh_c, h_all, combined, energies, alphas, feeds, states,
                              w, w_query, v, w_combine, drop)
        return feeds.transpose(0, 1)  # (B, T, H)

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.spaces[0].generation != ctx.generation:
            raise RuntimeError("the fused decoder ran another forward pass before this backward pass, which "
                               "overwrote its saved activations; set `model.decoder.fused = False` for this use")
        (joined, acts, cells, tanh_c, h_all, combined, energies, alphas, feeds, states,
         w, w_query, v, w_combine, drop) = ctx.saved_tensors
        steps, batch, hidden = feeds.shape
        full = feeds.dtype
        grad_out = grad_out.transpose(0, 1)  # (T, B, H)
        d_gates, grad_x, d_pre_combine, d_ctx, d_scores, d_query = ctx.spaces[1].take(
            feeds.device,
            (acts.shape, full),  # d_gates (T, B, 4H): gradients of the gate pre-activations
            (acts.shape if ctx.x_dtype != full else (0,), ctx.x_dtype),  # grad_x: d_gates in x_proj's dtype
            (feeds.shape, full),  # d_pre_combine (T, B, H)
            (feeds.shape, full),  # d_ctx (T, B, H)
            ((steps, alphas.shape[2], batch), full),  # d_scores (T, S, B) like the energies
            ((steps, batch, w_query.shape[0]), full),  # d_query (T, B, A)
        )
        d_keys = torch.zeros_like(energies[0])  # (S, B, A)
        d_energy = torch.empty_like(energies[0])  # (S, B, A), reused by every step
        d_feed = torch.zeros_like(feeds[0])  # (B, H): from the next step's input
        d_h_next = torch.zeros_like(feeds[0])  # (B, H): from the next step's recurrence
        d_c = torch.zeros_like(feeds[0])  # (B, H)
        v_row = v.squeeze(0)  # (A,)
        for t in reversed(range(steps)):
            with span(ATTENTION):
                d_pre = torch.add(grad_out[t], d_feed).mul_(1 - feeds[t].square())  # (B, H) through tanh
                d_pre_combine[t] = d_pre
                d_combined = _mm(d_pre, w_combine)  # (B, 2H)
                if drop is not None:
                    d_combined.mul_(drop[t])
                d_h = d_combined[:, :hidden].add_(d_h_next)  # (B, H)
                d_ctx[t] = d_combined[:, hidden:]
                alpha = alphas[t]  # (B, S)
                d_alpha = torch.bmm(states, d_ctx[t].unsqueeze(2).to(states.dtype)).squeeze(2).to(full)  # (B, S)
                d_score = d_alpha.sub_((alpha * d_alpha).sum(dim=1, keepdim=True)).mul_(alpha)  # softmax backward
                d_scores[t] = d_score.t()
                torch.mul(d_scores[t].unsqueeze(2), v_row, out=d_energy)  # (S, B, A): gradient of the tanh output
                torch.ops.aten.tanh_backward.grad_input(d_energy, energies[t], grad_input=d_energy)  # through tanh
                d_keys.add_(d_energy)
                torch.sum(d_energy, dim=0, out=d_query[t])  # (B, A)
                _add_mm_(d_h, d_query[t], w_query)  # (B, H)
            with span(DECODER_LSTM):
                i, f, g, o = acts[t].chunk(4, dim=1)
                d_i, d_f, d_g, d_o = d_gates[t].chunk(4, dim=1)
                torch.mul(d_h, tanh_c[t], out=d_o).mul_(o * (1 - o))
                d_c.addcmul_(d_h * o, 1 - tanh_c[t].square())  # (B, H)
                torch.mul(d_c, g, out=d_i).mul_(i * (1 - i))
                torch.mul(d_c, cells[t], out=d_f).mul_(f * (1 - f))
                torch.mul(d_c, i, out=d_g).mul_(1 - g.square())
                d_c.mul_(f)  # to c_{t-1}
                d_joined = _mm(d_gates[t], w)  # (B, 2H)
                d_feed, d_h_next = d_joined[:, :hidden], d_joined[:, hidden:]
        flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731  (T, B, n) -> (T * B, n)
        with span(DECODER_LSTM):
            grad_w = _mm(flat(d_gates).t(), flat(joined))  # (4H, 2H)
        with span(ATTENTION):
            grad_w_combine = _mm(flat(d_pre_combine).t(), flat(combined))  # (H, 2H)
            grad_w_query = _mm(flat(d_query).t(), flat(h_all))  # (A, H)
            grad_v = (d_scores.reshape(1, -1) @ energies.reshape(-1, energies.shape[-1]))  # (1, A)
            # d_states: sum over steps of alpha_t (B, S) x d_ctx_t (B, H) -> (B, S, H) in one batched multiply
            grad_states = torch.bmm(alphas.permute(1, 2, 0).to(states.dtype),
                                    d_ctx.transpose(0, 1).to(states.dtype))  # (B, S, T) @ (B, T, H)
        d_keys = d_keys.transpose(0, 1)  # (B, S, A)
        # (T, B, 4H), contiguous: the input projection's backward needs no copy, nor (in x_proj's dtype) autograd
        grad_x = d_gates if ctx.x_dtype == full else grad_x.copy_(d_gates)
        return (grad_x, d_h_next, d_c, d_feed, d_keys, grad_states, None, grad_w, grad_w_query, grad_v,
                grad_w_combine, None, None, None)


def fused_lstm_attention_loop(x_proj, h, c, feed, keys, states, mask, w, w_query, v, w_combine, drop=None,
                              spaces: tuple[Workspace, Workspace] | None = None, low: torch.dtype | None = None):
    """See the module doc; returns the attentional vectors (B, T, H). ``spaces``: workspaces to reuse across
    calls (the decoder keeps a pair); fresh ones when None. ``low``: bf16 to multiply in bf16 (call it with
    autocast off). The gradient for ``x_proj`` is a view of the backward workspace, valid until the next call:
    fine for a computed x_proj, not for a leaf tensor."""
    if spaces is None or (x_proj.is_leaf and x_proj.requires_grad):
        spaces = (Workspace(), Workspace())
    return _LstmAttentionLoop.apply(x_proj, h, c, feed, keys, states, mask, w, w_query, v, w_combine, drop, spaces,
                                    low)
