"""The Elman RNN, with every option of ``RNNCell``, over a whole sequence with hand-written BPTT.

Per step, in the cell's equations (``cells/rnn.py``)::

    h' = tanh or relu(gx + [LN](W_hh (h ⋆ mask)))      layer norm times its gain
    h = lerp(h', h, keep)                             zoneout

gx holds the input half and both biases. Each step is an in-place matmul and activation on
its rows of one buffer, which ends up holding h'; the backward needs only h': tanh' = 1 - h'²,
relu' = [h' > 0].
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .bptt import (carry, input_args, input_half, input_half_grads, input_states, norm_stats,
                   order, recurrent, recurrent_grad, recurrent_weight_grads, rows, save,
                   state_grads, steps, tanh, tanh_grad, zoneout_grad)
from ..matmul import StepMatmul


def _relu_grad(d: Tensor, y: Tensor, out: Tensor) -> Tensor:
    """d ⋆ relu'(a) from y = relu(a), zero where y = 0 as in torch."""
    return torch.mul(d, y > 0, out=out)


class _RNNSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gx, weight_ih, bias, h0, weight_hh, gain, mask, keep, batch_sizes, reverse,
                relu):
        # gx: x (N, I) packed, with weight_ih (H, I) and bias (H,) both biases summed; or
        # without them the input half (N, H) computed outside (layer norm); h0 (B, H);
        # weight_hh (H, H); gain (H,); mask (B, H); keep (N, H), a rate or None
        bs = batch_sizes
        acts = input_half(gx, weight_ih, bias)  # pre-activations, then h' in place
        base = acts if weight_ih is not None else gx  # what the recurrent half adds to
        raw = None if gain is None else torch.empty_like(acts)
        hs = acts if keep is None else torch.empty_like(acts)  # the outputs, zoneout applied
        w, h_n = StepMatmul(weight_hh, bs), h0.clone()
        base_, acts_, raw_, hs_, kh = (steps(b, bs) for b in (base, acts, raw, hs, keep))
        activate = torch.relu_ if relu else (lambda a: tanh(a, a))
        h = h0  # state of the active rows, a view into hs
        for t in order(bs, reverse):
            (h,) = carry((h,), (h0,), (h_n,), bs[t])
            hd = h if mask is None else h * mask[:bs[t]]
            hn = activate(recurrent(base_[t], hd, w, gain, 1, raw_[t], acts_[t]))
            h = hn if keep is None else torch.lerp(hn, h, kh[t], out=hs_[t])
        carry((h,), (h0,), (h_n,), 0)
        save(ctx, bs, reverse, acts, raw, hs, h0, weight_hh, gain, mask,
             None if weight_ih is None else gx, weight_ih)  # x, for the input gradients
        ctx.keep, ctx.relu = keep, relu
        return hs, h_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs: Tensor, d_hn: Tensor):
        acts, raw, hs, h0, weight_hh, gain, mask, x, weight_ih = ctx.saved_tensors
        bs = ctx.batch_sizes
        (h_prev,) = input_states(bs, ctx.reverse, (hs, h0))  # (N, H)
        d_pre = torch.empty_like(acts)  # of the pre-activations
        d_raw = d_pre if gain is None else torch.empty_like(raw)
        normed, stats = None, [None] * len(bs)
        if gain is not None:
            normed, mean, rstd = norm_stats(raw, 1)
            stats = list(zip(mean.split(bs), rstd.split(bs)))
        activation_grad = _relu_grad if ctx.relu else tanh_grad
        (dh,), prefix = state_grads(bs, d_hn)
        w_t = StepMatmul(weight_hh.t(), bs)
        h_new, d_out, d_pre_, raw_, d_raw_, kh = (
            steps(b, bs) for b in (acts, d_hs, d_pre, raw, d_raw, ctx.keep))
        for t in order(bs, not ctx.reverse):
            (dh_b,) = prefix[bs[t]]
            d_h, dh_kept = zoneout_grad(d_out[t] + dh_b, kh[t])
            activation_grad(d_h, h_new[t], out=d_pre_[t])
            recurrent_grad(d_pre_[t], w_t, gain, stats[t], raw_[t], d_raw_[t], dh_b)
            if mask is not None:
                dh_b.mul_(mask[:bs[t]])
            if dh_kept is not None:
                dh_b.add_(dh_kept)
        if mask is not None:
            h_prev = h_prev * rows(mask, bs)  # what the recurrent matmul saw
        need = ctx.needs_input_grad
        d_weight_hh, d_gain = recurrent_weight_grads(need[4:6], d_raw, d_pre, h_prev, normed)
        return (*input_half_grads(need, x, weight_ih, d_pre), dh, d_weight_hh, d_gain,
                None, None, None, None, None)


def run(cell, x: Tensor, batch_sizes: list[int], state: tuple[Tensor], reverse: bool,
        mask: Tensor | None, keep: tuple) -> tuple[Tensor, tuple[Tensor]]:
    """``cell.sequence`` (an RNNCell with any options) on the kernel: packed x (N, I), state
    (h0,), the noise ``cell.noise`` drew. Returns the packed outputs and (h_n,)."""
    out, h = _RNNSequence.apply(*input_args(cell, x), *state, cell.weight_hh,
                                getattr(cell, "ln_hh_weight", None), mask, *keep, batch_sizes,
                                reverse, cell.nonlinearity == "relu")
    return out, (h,)
