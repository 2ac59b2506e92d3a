"""The loss (``mt.model.loss.SummedLoss``) with the output layer and label-smoothed cross-entropy fused into one
memory-light autograd function: the same loss and gradients up to rounding (tests/test_backends.py).

The plain route (logits -> log_softmax -> NLL, then their backward passes) writes and re-reads several (N, V)
tensors (128 MB each for a 4,000-token batch with 8,000 pieces) and zero-fills another for the NLL gradient.
Here logits are made one row block at a time; the gradient (softmax - smoothed target) is formed in place and
immediately multiplied back into the input and weight gradients, so no (N, V) tensor outlives its block. The
loss is the last node of the graph, so computing the gradients during the forward pass is exact.
"""

from __future__ import annotations

import torch

from mt.model.loss import SummedLoss, full_precision
from mt.profiling import OUTPUT_LOSS, span

__all__ = ["FastSummedLoss", "linear_cross_entropy", "linear_rdrop_cross_entropy"]


def _weight_grad_adder(grad_w: torch.Tensor, w_mm: torch.Tensor, low: torch.dtype | None):
    """-> add(grad (n, V), xs (n, H)): grad_w (V, H) += grad^T @ xs, in place; under ``low`` the product is bf16
    in one reused buffer and its fp32 copy in another (no (V, H) tensor per block)."""
    if not low:
        return lambda grad, xs: grad_w.addmm_(grad.t(), xs)
    prod, prod_full = w_mm.new_empty(grad_w.shape), torch.empty_like(grad_w)
    return lambda grad, xs: grad_w.add_(prod_full.copy_(torch.mm(grad.t(), xs, out=prod)))


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, smoothing: float, block: int,
                low: torch.dtype | None):
        """x: (N, H), weight: (V, H) fp32, target: (N,) -> summed label-smoothed cross-entropy, a scalar. ``low``
        (bf16): the three multiplies take bf16 inputs; softmax, loss and gradient sums stay fp32."""
        n, vocab = x.shape[0], weight.shape[0]
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_x = torch.empty_like(x) if want_grad else None
        grad_w = torch.zeros_like(weight) if want_grad else None
        total = x.new_zeros(())
        x_mm, w_mm = (x.to(low), weight.to(low)) if low else (x, weight)  # what the multiplies read
        # Two (block, V) buffers reused by every block (fresh ones would cost page faults): fp32 logits, and
        # under ``low`` the bf16 product / gradient
        rows = min(block, n)
        buf = x.new_empty(rows, vocab)
        buf_mm = x_mm.new_empty(rows, vocab) if low else buf
        add_weight_grad = _weight_grad_adder(grad_w, w_mm, low) if want_grad else None
        for start in range(0, n, block):
            xs, ts = x_mm[start:start + block], target[start:start + block]  # (n_b, H), (n_b,)
            logits = torch.mm(xs, w_mm.t(), out=buf_mm[:xs.shape[0]])  # (n_b, V)
            if low:
                logits = buf[:xs.shape[0]].copy_(logits)  # fp32
            picked = logits.gather(1, ts.unsqueeze(1)).squeeze(1)  # (n_b,)
            row_sum = logits.sum(dim=1)  # (n_b,)
            top = logits.amax(dim=1, keepdim=True)  # (n_b, 1)
            probs = logits.sub_(top).exp_()  # in place: unnormalised softmax (n_b, V)
            norm = probs.sum(dim=1)  # (n_b,)
            lse = top.squeeze(1) + norm.log()  # (n_b,)
            # loss = lse - (1 - eps) * z_target - eps / V * sum_j z_j   (PyTorch's label smoothing)
            total += (lse - (1.0 - smoothing) * picked - (smoothing / vocab) * row_sum).sum()
            if want_grad:
                grad = probs.mul_(norm.reciprocal_().unsqueeze(1))  # softmax - smoothed one-hot, in place
                if smoothing:
                    grad.sub_(smoothing / vocab)
                grad.scatter_add_(1, ts.unsqueeze(1), grad.new_full((ts.shape[0], 1), -(1.0 - smoothing)))
                if low:
                    grad = buf_mm[:xs.shape[0]].copy_(grad)
                grad_x[start:start + block] = grad @ w_mm  # (n_b, H)
                add_weight_grad(grad, xs)
        ctx.save_for_backward(grad_x, grad_w)
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_output, grad_w * grad_output, None, None, None, None


class _LinearRDrop(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                smoothing: float, alpha: float, block: int, low: torch.dtype | None):
        """x1, x2: (N, H) the same N target tokens under two dropout masks, weight: (V, H) fp32, target: (N,) ->
        sum over tokens of (CE(z1) + CE(z2)) / 2 + alpha * (KL(p1 || p2) + KL(p2 || p1)) / 4, a scalar, where
        z = x @ weight.T, p = softmax(z) and CE is label-smoothed. Gradients are formed here, block by block, as
        in ``_LinearCrossEntropy``: with k = alpha / 4, d = log p1 - log p2 and y the smoothed target,
        d/dz1 = p1 * (1/2 + k + k * (d - <p1, d>)) - k * p2 - y / 2, and d/dz2 the same with 1 and 2 swapped and
        d negated. Both passes' rows of a block go through the multiplies together."""
        n, vocab = x1.shape[0], weight.shape[0]
        k = alpha / 4.0
        want_grad = any(ctx.needs_input_grad[:3])
        grad_x1, grad_x2 = (torch.empty_like(x1), torch.empty_like(x2)) if want_grad else (None, None)
        grad_w = torch.zeros_like(weight) if want_grad else None
        total = x1.new_zeros(())
        w_mm = weight.to(low) if low else weight  # what the multiplies read
        rows = min(block, n)
        # reused buffers (fresh ones would cost page faults): both passes' logits, then log-probabilities, then
        # gradients (2 rows, V); their probabilities; d (rows, V); under ``low`` the bf16 product / gradient
        logp, probs, diff = x1.new_empty(2 * rows, vocab), x1.new_empty(2 * rows, vocab), x1.new_empty(rows, vocab)
        buf_mm = w_mm.new_empty(2 * rows, vocab) if low else logp
        add_weight_grad = _weight_grad_adder(grad_w, w_mm, low) if want_grad else None
        for start in range(0, n, block):
            m = min(block, n - start)
            xs = torch.cat([x1[start:start + m], x2[start:start + m]])  # (2m, H): pass 1's rows, then pass 2's
            xs_mm = xs.to(low) if low else xs
            ts = target[start:start + m].repeat(2).unsqueeze(1)  # (2m, 1)
            lp, p, d = logp[:2 * m], probs[:2 * m], diff[:m]
            torch.mm(xs_mm, w_mm.t(), out=buf_mm[:2 * m])  # logits (2m, V)
            if low:
                lp.copy_(buf_mm[:2 * m])  # fp32
            picked, row_sum = lp.gather(1, ts).squeeze(1), lp.sum(dim=1)  # (2m,) each
            top = lp.amax(dim=1, keepdim=True)  # (2m, 1)
            torch.exp(lp.sub_(top), out=p)  # unnormalised softmax
            norm = p.sum(dim=1)  # (2m,)
            p.div_(norm.unsqueeze(1))
            log_norm = norm.log()  # (2m,)
            lse = top.squeeze(1) + log_norm
            lp.sub_(log_norm.unsqueeze(1))  # log-probabilities
            # cross-entropy = lse - (1 - eps) * z_target - eps / V * sum_j z_j  (PyTorch's label smoothing), halved
            total += 0.5 * (lse - (1.0 - smoothing) * picked - (smoothing / vocab) * row_sum).sum()
            p1, p2 = p[:m], p[m:]
            torch.sub(lp[:m], lp[m:], out=d)  # d = log p1 - log p2 (m, V)
            dot1 = torch.bmm(p1.unsqueeze(1), d.unsqueeze(2)).view(m, 1)  # <p1, d> (m, 1)
            dot2 = torch.bmm(p2.unsqueeze(1), d.unsqueeze(2)).view(m, 1)  # <p2, d>
            total += k * (dot1.sum() - dot2.sum())  # sum_j (p1 - p2) d = KL(p1 || p2) + KL(p2 || p1)
            if want_grad:
                g1, g2 = lp[:m], lp[m:]  # the log-probabilities are spent: the gradients take their place
                torch.sub(d, dot1, out=g1).mul_(k).add_(0.5 + k).mul_(p1).sub_(p2, alpha=k)
                torch.sub(dot2, d, out=g2).mul_(k).add_(0.5 + k).mul_(p2).sub_(p1, alpha=k)
                if smoothing:
                    lp.sub_(0.5 * smoothing / vocab)
                lp.scatter_add_(1, ts, lp.new_full(ts.shape, -0.5 * (1.0 - smoothing)))
                grad = buf_mm[:2 * m].copy_(lp) if low else lp
                both = grad @ w_mm  # (2m, H)
                grad_x1[start:start + m], grad_x2[start:start + m] = both[:m], both[m:]
                add_weight_grad(grad, xs_mm)
        ctx.save_for_backward(grad_x1, grad_x2, grad_w)
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_x1, grad_x2, grad_w = ctx.saved_tensors
        return grad_x1 * grad_output, grad_x2 * grad_output, grad_w * grad_output, None, None, None, None, None


def linear_rdrop_cross_entropy(x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                               smoothing: float = 0.0, alpha: float = 1.0, block: int = 512) -> torch.Tensor:
    """R-Drop (Liang et al. 2021): the summed label-smoothed cross-entropy of two dropout passes over the same
    tokens, averaged, plus ``alpha`` x their symmetric KL divergence / 4 per token: the weighting of the authors'
    fairseq criterion (cross-entropy summed over both passes + alpha x symmetric KL / 2) halved, so their
    alpha (5 for translation) means the same here. x1, x2: (N, H), the output layer's inputs of pass 1 and 2;
    weight: (V, H); target: (N,). Precision as ``linear_cross_entropy``."""
    device = x1.device.type
    low = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    with torch.autocast(device, enabled=False), span(OUTPUT_LOSS):
        return _LinearRDrop.apply(full_precision(x1), full_precision(x2), full_precision(weight), target,
                                  float(smoothing), float(alpha), block, low)


def linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0,
                         block: int = 512) -> torch.Tensor:
    """Summed label-smoothed cross-entropy of ``softmax(x @ weight.T)`` against ``target``. Under bf16 autocast
    the multiplies take bf16 inputs (fp32 accumulation); the softmax, the loss and the gradients are fp32."""
    if not torch.is_grad_enabled():  # no gradients wanted: the function would form them anyway (needs_input_grad)
        x, weight = x.detach(), weight.detach()
    device = x.device.type
    low = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    with torch.autocast(device, enabled=False), span(OUTPUT_LOSS):
        return _LinearCrossEntropy.apply(full_precision(x), full_precision(weight), target, float(smoothing), block,
                                         low)


class FastSummedLoss(SummedLoss):
    """``SummedLoss`` with the fused output layer and loss."""

    def cross_entropy(self, x: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return linear_cross_entropy(x, weight, target, self.smoothing)

    def rdrop_loss(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, target: torch.Tensor):
        return linear_rdrop_cross_entropy(x1, x2, weight, target, self.smoothing, self.rdrop)
