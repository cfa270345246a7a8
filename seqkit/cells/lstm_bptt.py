"""The plain LSTM over a whole sequence with hand-written backpropagation through time.

The forward writes each step into preallocated buffers with a handful of in-place ops; the
backward walks the steps once and leaves the weight gradient to one (4H, N) @ (N, H) matmul
after the loop (see ``bptt`` for the machinery the RNN, GRU and LSTM share).

Gates here are ordered i, f, o, g (torch's are i, f, g, o): the three sigmoids are then one
contiguous block, so a step needs one sigmoid and one tanh call. ``LSTMCell.sequence``
permutes the weights, not the activations.

Variational recurrent dropout (Gal & Ghahramani 2016) runs here too: ``mask`` (B, H), one per
sequence, multiplies h<t-1> before W_h at every step, and the backward multiplies the state
gradient by it.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .bptt import (blocks, carry, input_grads, input_states, order, project, save,
                   sigmoid_grad_, state_grads, step_weight, tanh_grad)

IFOG = (0, 1, 3, 2)  # torch's gate blocks i, f, g, o -> i, f, o, g


class _LSTMSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight_ih: Tensor, bias: Tensor | None, h0: Tensor, c0: Tensor,
                weight_hh: Tensor, batch_sizes: list[int], reverse: bool, mask: Tensor | None):
        # x: (N, I) packed; weights (4H, *) and bias (4H,) with gates i, f, o, g; h0, c0 and
        # the recurrent dropout mask: (B, H)
        H, N = h0.size(1), x.size(0)
        acts = project(x, weight_ih, bias)  # (N, 4H), then the activations in place
        w = step_weight(weight_hh)
        cs, tanh_cs, hs = (x.new_empty(N, H) for _ in range(3))
        h_n, c_n = h0.clone(), c0.clone()
        rows = acts.split(batch_sizes)
        sig, tanh = blocks(acts, batch_sizes, H, 0, 3), blocks(acts, batch_sizes, H, 3, 4)
        i, f, o, g = (blocks(acts, batch_sizes, H, k, k + 1) for k in range(4))
        c_out, tanh_c, h_out = (buf.split(batch_sizes) for buf in (cs, tanh_cs, hs))
        h, c = h0, c0  # state of the active rows, a view into the buffers
        for t in order(batch_sizes, reverse):
            h, c = carry((h, c), (h0, c0), (h_n, c_n), batch_sizes[t])
            rows[t].addmm_(h if mask is None else h * mask[:h.size(0)], w)
            sig[t].sigmoid_()
            tanh[t].tanh_()
            c = torch.mul(f[t], c, out=c_out[t]).addcmul_(i[t], g[t])
            h = torch.mul(o[t], torch.tanh(c, out=tanh_c[t]), out=h_out[t])
        carry((h, c), (h0, c0), (h_n, c_n), 0)
        save(ctx, batch_sizes, reverse, x, weight_ih, acts, cs, tanh_cs, hs, h0, c0, weight_hh,
             mask)
        return hs, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs: Tensor, d_hn: Tensor, d_cn: Tensor):
        x, weight_ih, acts, cs, tanh_cs, hs, h0, c0, weight_hh, mask = ctx.saved_tensors
        H, bs = weight_hh.size(1), ctx.batch_sizes
        h_prev, c_prev = input_states(bs, ctx.reverse, (hs, h0), (cs, c0))  # (N, H) each
        d_gates = torch.empty_like(acts)
        (dh, dc), prefix = state_grads(bs, d_hn, d_cn)
        sig, g = blocks(acts, bs, H, 0, 3), blocks(acts, bs, H, 3, 4)
        i, f, o = (blocks(acts, bs, H, k, k + 1) for k in range(3))
        d_rows, d_sig = d_gates.split(bs), blocks(d_gates, bs, H, 0, 3)
        d_i, d_f, d_o, d_g = (blocks(d_gates, bs, H, k, k + 1) for k in range(4))
        tanh_c, d_out, c_in = (buf.split(bs) for buf in (tanh_cs, d_hs, c_prev))
        for t in order(bs, not ctx.reverse):
            dh_b, dc_b = prefix[bs[t]]
            dh_t = d_out[t] + dh_b
            dc_t = torch.addcmul(dc_b, tanh_grad(dh_t, tanh_c[t]), o[t])  # dc + dh ⋆ o ⋆ tanh'
            torch.mul(dc_t, g[t], out=d_i[t])
            torch.mul(dc_t, c_in[t], out=d_f[t])
            torch.mul(dh_t, tanh_c[t], out=d_o[t])
            torch.mul(dc_t, i[t], out=d_g[t])
            sigmoid_grad_(d_sig[t], sig[t])
            tanh_grad(d_g[t], g[t], out=d_g[t])
            torch.mul(dc_t, f[t], out=dc_b)
            torch.mm(d_rows[t], weight_hh, out=dh_b)
            if mask is not None:
                dh_b.mul_(mask[:bs[t]])
        d_x, d_weight_ih, d_bias = input_grads(ctx.needs_input_grad, x, weight_ih, [d_gates])
        if mask is not None:  # the rows of step t are sequences 0..bs[t]-1
            h_prev = h_prev * torch.cat([mask[:b] for b in bs])
        d_weight_hh = d_gates.t().mm(h_prev)  # (4H, H): one matmul for all steps
        return d_x, d_weight_ih, d_bias, dh, dc, d_weight_hh, None, None, None


def lstm_sequence(x: Tensor, weight_ih: Tensor, bias: Tensor | None, h0: Tensor, c0: Tensor,
                  weight_hh: Tensor, batch_sizes: list[int], reverse: bool = False,
                  mask: Tensor | None = None):
    """Plain LSTM over packed input x (N, I); weights and bias (both biases summed) have their
    gate rows in the order i, f, o, g; ``mask`` (B, H): recurrent dropout on h<t-1>. Returns the
    packed outputs (N, H) and h_n, c_n (B, H).
    """
    return _LSTMSequence.apply(x, weight_ih, bias, h0, c0, weight_hh, batch_sizes, reverse,
                               mask)
