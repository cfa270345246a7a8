"""The plain Elman RNN over a whole sequence with hand-written backpropagation through time.

h' = tanh or relu(W_ih x + b_ih + W_hh h + b_hh). The input half of every step is one
matmul; then each step is one in-place ``addmm_`` and one in-place activation on its rows of
the same buffer, which ends up holding the outputs. The backward needs only those outputs:
tanh' = 1 - h'², relu' = [h' > 0].
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .bptt import (carry, input_grads, input_states, order, project, save,
                   state_grads, step_weight, tanh_grad)


def _relu_grad(d: Tensor, y: Tensor, out: Tensor) -> Tensor:
    """d ⋆ relu'(a) from y = relu(a), zero where y = 0 as in torch."""
    return torch.mul(d, y > 0, out=out)


class _RNNSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight_ih: Tensor, bias: Tensor | None, h0: Tensor,
                weight_hh: Tensor, batch_sizes: list[int], reverse: bool, relu: bool):
        # x: (N, I) packed; weights (H, *), bias (H,) = b_ih + b_hh; h0: (B, H)
        hs = project(x, weight_ih, bias)  # (N, H): pre-activations, then the outputs in place
        w = step_weight(weight_hh)
        h_n, rows = h0.clone(), hs.split(batch_sizes)
        activate = torch.relu_ if relu else torch.tanh_
        h = h0  # state of the active rows, a view into hs
        for t in order(batch_sizes, reverse):
            (h,) = carry((h,), (h0,), (h_n,), batch_sizes[t])
            h = activate(rows[t].addmm_(h, w))
        carry((h,), (h0,), (h_n,), 0)
        save(ctx, batch_sizes, reverse, x, weight_ih, hs, h0, weight_hh)
        ctx.relu = relu
        return hs, h_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs: Tensor, d_hn: Tensor):
        x, weight_ih, hs, h0, weight_hh = ctx.saved_tensors
        bs = ctx.batch_sizes
        (h_prev,) = input_states(bs, ctx.reverse, (hs, h0))  # (N, H)
        d_pre = torch.empty_like(hs)  # gradient of the pre-activations
        (dh,), prefix = state_grads(bs, d_hn)
        activation_grad = _relu_grad if ctx.relu else tanh_grad
        h_out, d_out, d_rows = (buf.split(bs) for buf in (hs, d_hs, d_pre))
        for t in order(bs, not ctx.reverse):
            (dh_t,) = prefix[bs[t]]
            activation_grad(dh_t.add_(d_out[t]), h_out[t], out=d_rows[t])
            torch.mm(d_rows[t], weight_hh, out=dh_t)
        d_x, d_weight_ih, d_bias = input_grads(ctx.needs_input_grad, x, weight_ih, [d_pre])
        d_weight_hh = d_pre.t().mm(h_prev)  # (H, H): one matmul for all steps
        return d_x, d_weight_ih, d_bias, dh, d_weight_hh, None, None, None


def rnn_sequence(x: Tensor, weight_ih: Tensor, bias: Tensor | None, h0: Tensor,
                 weight_hh: Tensor, batch_sizes: list[int], reverse: bool = False,
                 nonlinearity: str = "tanh"):
    """Plain RNN over packed input x (N, I) with torch.nn.RNN's weights, bias = b_ih + b_hh (or
    None). Returns the packed outputs (N, H) and h_n (B, H)."""
    return _RNNSequence.apply(x, weight_ih, bias, h0, weight_hh, batch_sizes, reverse,
                              nonlinearity == "relu")
