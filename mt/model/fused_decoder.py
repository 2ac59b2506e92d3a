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
"""

from __future__ import annotations

import math

import torch

from mt.profiling import ATTENTION, DECODER_LSTM, span

__all__ = ["Workspace", "fused_lstm_attention_loop"]


class Workspace:
    """One flat buffer handed out as views, reused by every call. ``generation`` counts the calls, so that a
    backward pass can tell when a newer forward pass has overwritten what it saved (and refuse to run)."""

    def __init__(self):
        self.buffer: torch.Tensor | None = None
        self.generation = 0

    def take(self, like: torch.Tensor, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
        sizes = [math.prod(shape) for shape in shapes]
        buf = self.buffer
        if buf is None or buf.numel() < sum(sizes) or buf.dtype != like.dtype or buf.device != like.device:
            self.buffer = buf = None  # drop both references first: never two buffers alive at once
            self.buffer = buf = like.new_empty(int(sum(sizes) * 1.05))
        self.generation += 1
        views, start = [], 0
        for shape, size in zip(shapes, sizes):
            views.append(buf[start:start + size].view(shape))
            start += size
        return views


class _LstmAttentionLoop(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_proj, h, c, feed, keys, states, mask, w, w_query, v, w_combine, drop, spaces):
        """x_proj (T, B, 4H) time-major (each step's slice contiguous), h, c, feed (B, H), keys (B, S, A),
        states (B, S, H), mask (B, S) bool, w (4H, 2H) = [W_feed | W_hh], w_query (A, H), v (1, A),
        w_combine (H, 2H), drop (T, B, 2H) or None,
        spaces: two Workspaces (forward, backward) -> attentional vectors (B, T, H)."""
        steps, batch, _ = x_proj.shape
        hidden = h.shape[1]
        blocked = ~mask  # (B, S)
        keys = keys.transpose(0, 1).contiguous()  # (S, B, A): adding the query (B, A) is twice as fast this way
        joined, acts, cells, tanh_c, h_all, combined, energies, alphas = spaces[0].take(
            x_proj,
            (steps, batch, 2 * hidden),  # joined: [feed_{t-1}; h_{t-1}]
            (steps, batch, 4 * hidden),  # acts: sig(i), sig(f), tanh(g), sig(o)
            (steps + 1, batch, hidden),  # cells: c_{-1} = c, c_0, ..., c_{T-1}
            (steps, batch, hidden),  # tanh_c: tanh(c_t)
            (steps, batch, hidden),  # h_all: h_t
            (steps, batch, 2 * hidden),  # combined: drop_t * [h_t; ctx_t]
            (steps, *keys.shape),  # energies (T, S, B, A)
            (steps, batch, keys.shape[0]),  # alphas (T, B, S)
        )
        ctx.spaces, ctx.generation = spaces, spaces[0].generation
        feeds = x_proj.new_empty(steps, batch, hidden)  # the output: not in the workspace
        cells[0] = c
        for t in range(steps):
            with span(DECODER_LSTM):
                joined[t, :, :hidden] = feed
                joined[t, :, hidden:] = h
                gates = torch.addmm(x_proj[t], joined[t], w.t(), out=acts[t])  # (B, 4H)
                gates[:, :2 * hidden].sigmoid_()
                gates[:, 2 * hidden:3 * hidden].tanh_()
                gates[:, 3 * hidden:].sigmoid_()
                i, f, g, o = gates.chunk(4, dim=1)
                c = torch.addcmul(f * cells[t], i, g, out=cells[t + 1])  # (B, H)
                h = torch.mul(o, torch.tanh(c, out=tanh_c[t]), out=h_all[t])  # (B, H)
            with span(ATTENTION):
                energy = torch.add(keys, h @ w_query.t(), out=energies[t]).tanh_()  # (S, B, A)
                scores = (energy @ v.squeeze(0)).t().masked_fill(blocked, torch.finfo(energy.dtype).min)  # (B, S)
                alpha = torch.softmax(scores, dim=1)  # (B, S)
                alphas[t] = alpha
                combined[t, :, :hidden] = h
                combined[t, :, hidden:] = torch.bmm(alpha.unsqueeze(1), states).squeeze(1)  # context (B, H)
                if drop is not None:
                    combined[t].mul_(drop[t])
                feed = torch.tanh(combined[t] @ w_combine.t(), out=feeds[t])  # (B, H)
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
        grad_out = grad_out.transpose(0, 1)  # (T, B, H)
        d_gates, d_pre_combine, d_ctx, d_scores, d_query = ctx.spaces[1].take(
            feeds,
            acts.shape,  # d_gates (T, B, 4H): gradients of the gate pre-activations
            feeds.shape,  # d_pre_combine (T, B, H)
            feeds.shape,  # d_ctx (T, B, H)
            (steps, alphas.shape[2], batch),  # d_scores (T, S, B) like the energies
            (steps, batch, w_query.shape[0]),  # d_query (T, B, A)
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
                d_combined = d_pre @ w_combine  # (B, 2H)
                if drop is not None:
                    d_combined.mul_(drop[t])
                d_h = d_combined[:, :hidden].add_(d_h_next)  # (B, H)
                d_ctx[t] = d_combined[:, hidden:]
                alpha = alphas[t]  # (B, S)
                d_alpha = torch.bmm(states, d_ctx[t].unsqueeze(2)).squeeze(2)  # (B, S)
                d_score = d_alpha.sub_((alpha * d_alpha).sum(dim=1, keepdim=True)).mul_(alpha)  # softmax backward
                d_scores[t] = d_score.t()
                torch.mul(d_scores[t].unsqueeze(2), v_row, out=d_energy)  # (S, B, A): gradient of the tanh output
                torch.ops.aten.tanh_backward.grad_input(d_energy, energies[t], grad_input=d_energy)  # through tanh
                d_keys.add_(d_energy)
                torch.sum(d_energy, dim=0, out=d_query[t])  # (B, A)
                d_h.addmm_(d_query[t], w_query)  # (B, H)
            with span(DECODER_LSTM):
                i, f, g, o = acts[t].chunk(4, dim=1)
                d_i, d_f, d_g, d_o = d_gates[t].chunk(4, dim=1)
                torch.mul(d_h, tanh_c[t], out=d_o).mul_(o * (1 - o))
                d_c.addcmul_(d_h * o, 1 - tanh_c[t].square())  # (B, H)
                torch.mul(d_c, g, out=d_i).mul_(i * (1 - i))
                torch.mul(d_c, cells[t], out=d_f).mul_(f * (1 - f))
                torch.mul(d_c, i, out=d_g).mul_(1 - g.square())
                d_c.mul_(f)  # to c_{t-1}
                d_joined = d_gates[t] @ w  # (B, 2H)
                d_feed, d_h_next = d_joined[:, :hidden], d_joined[:, hidden:]
        flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731  (T, B, n) -> (T * B, n)
        with span(DECODER_LSTM):
            grad_w = flat(d_gates).t() @ flat(joined)  # (4H, 2H)
        with span(ATTENTION):
            grad_w_combine = flat(d_pre_combine).t() @ flat(combined)  # (H, 2H)
            grad_w_query = flat(d_query).t() @ flat(h_all)  # (A, H)
            grad_v = (d_scores.reshape(1, -1) @ energies.reshape(-1, energies.shape[-1]))  # (1, A)
            # d_states: sum over steps of alpha_t (B, S) x d_ctx_t (B, H) -> (B, S, H) in one batched multiply
            grad_states = torch.bmm(alphas.permute(1, 2, 0), d_ctx.transpose(0, 1))  # (B, S, T) @ (B, T, H)
        d_keys = d_keys.transpose(0, 1)  # (B, S, A)
        grad_x = d_gates  # (T, B, 4H), contiguous: the input projection's backward needs no copy
        return (grad_x, d_h_next, d_c, d_feed, d_keys, grad_states, None, grad_w, grad_w_query, grad_v,
                grad_w_combine, None, None)


def fused_lstm_attention_loop(x_proj, h, c, feed, keys, states, mask, w, w_query, v, w_combine, drop=None,
                              spaces: tuple[Workspace, Workspace] | None = None):
    """See the module doc; returns the attentional vectors (B, T, H). ``spaces``: workspaces to reuse across
    calls (the decoder keeps a pair); fresh ones when None. The gradient for ``x_proj`` is a view of the
    backward workspace, valid until the next call: fine for a computed x_proj, not for a leaf tensor."""
    if spaces is None or (x_proj.is_leaf and x_proj.requires_grad):
        spaces = (Workspace(), Workspace())
    return _LstmAttentionLoop.apply(x_proj, h, c, feed, keys, states, mask, w, w_query, v, w_combine, drop, spaces)
