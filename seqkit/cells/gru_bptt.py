"""The plain GRU (cuDNN form) over a whole sequence with hand-written backpropagation.

Per step, with x_* = W_i* x + b_i* from one matmul over the whole sequence::

    r = σ(x_r + W_hr h + b_hr)        z = σ(x_z + W_hz h + b_hz)
    n = tanh(x_n + r ⋆ (W_hn h + b_hn))
    h' = (1 - z) ⋆ n + z ⋆ h

b_hn sits inside r ⋆ (...), so only b_hr and b_hz fold into the input projection. The
buffer ``acts`` (N, 3H) starts as [x_r + b_hr, x_z + b_hz, b_hn]; one in-place
``addmm_(h, W_hh.T)`` per step turns a step's rows into [pre_r, pre_z, W_hn h + b_hn] and
the sigmoid into [r, z, W_hn h + b_hn], all the backward needs besides n and h.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .bptt import (blocks, carry, input_grads, input_states, order, project, save,
                   sigmoid_grad_, state_grads, step_weight, tanh_grad)

SPANS = ((0, 2), (0, 1), (1, 2), (2, 3))  # gate blocks of a (N, 3H) buffer: rz, r, z, n


def _projection(x: Tensor, weight_ih: Tensor, bias_ih: Tensor | None,
                bias_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    """acts (N, 3H) = [x_r + b_hr, x_z + b_hz, b_hn] and ns (N, H) = x_n, as the loop wants."""
    H = weight_ih.size(0) // 3
    acts, w_rz, w_n = x.new_empty(x.size(0), 3 * H), weight_ih[:2 * H], weight_ih[2 * H:]
    b_rz = b_n = None
    if bias_ih is not None:
        b_rz, b_n = bias_ih[:2 * H] + bias_hh[:2 * H], bias_ih[2 * H:]
    project(x, w_rz, b_rz, out=acts[:, :2 * H])  # writes straight into the strided block
    acts[:, 2 * H:] = 0 if bias_hh is None else bias_hh[2 * H:]
    return acts, project(x, w_n, b_n)


class _GRUSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight_ih: Tensor, bias_ih: Tensor | None,
                bias_hh: Tensor | None, h0: Tensor, weight_hh: Tensor, batch_sizes: list[int],
                reverse: bool):
        # x: (N, I) packed; weights (3H, *) and biases (3H,) with gates r, z, n; h0: (B, H)
        H, bs = h0.size(1), batch_sizes
        acts, ns = _projection(x, weight_ih, bias_ih, bias_hh)
        w = step_weight(weight_hh)
        hs, h_n = x.new_empty(x.size(0), H), h0.clone()
        rows = acts.split(bs)
        rz, r, z, wh_n = (blocks(acts, bs, H, *k) for k in SPANS)  # wh_n: W_hn h + b_hn
        n_out, h_out = ns.split(bs), hs.split(bs)
        h = h0  # state of the active rows, a view into hs
        for t in order(bs, reverse):
            (h,) = carry((h,), (h0,), (h_n,), bs[t])
            rows[t].addmm_(h, w)
            rz[t].sigmoid_()
            n = n_out[t].addcmul_(r[t], wh_n[t]).tanh_()
            h = torch.lerp(n, h, z[t], out=h_out[t])  # n + z ⋆ (h - n)
        carry((h,), (h0,), (h_n,), 0)
        save(ctx, batch_sizes, reverse, x, weight_ih, acts, ns, hs, h0, weight_hh)
        return hs, h_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs: Tensor, d_hn: Tensor):
        x, weight_ih, acts, ns, hs, h0, weight_hh = ctx.saved_tensors
        H, bs = weight_hh.size(1), ctx.batch_sizes
        (h_prev,) = input_states(bs, ctx.reverse, (hs, h0))  # (N, H)
        # gradients of the gate pre-activations: the hidden side [r, z, n ⋆ r] (N, 3H), which
        # feeds the per-step matmul, and the input side of n (N, H); r and z are shared
        d_hid, d_xn = torch.empty_like(acts), torch.empty_like(ns)
        (dh,), prefix = state_grads(bs, d_hn)
        rz, r, z, wh_n = (blocks(acts, bs, H, *k) for k in SPANS)
        d_rows = d_hid.split(bs)
        d_rz, d_r, d_z, d_wh_n = (blocks(d_hid, bs, H, *k) for k in SPANS)
        n, h_in, d_out, d_n = (buf.split(bs) for buf in (ns, h_prev, d_hs, d_xn))
        for t in order(bs, not ctx.reverse):
            (dh_t,) = prefix[bs[t]]
            dh_t.add_(d_out[t])  # dh_t is rewritten with dh of the step before at the end
            # d_n = dh ⋆ (1 - z) ⋆ tanh'; r's gradient comes through W_hn h + b_hn, z's through
            # h - n, and h's directly through z ⋆ h and via the matmul
            tanh_grad(torch.addcmul(dh_t, dh_t, z[t], value=-1), n[t], out=d_n[t])
            torch.mul(d_n[t], r[t], out=d_wh_n[t])
            torch.mul(d_n[t], wh_n[t], out=d_r[t])
            torch.mul(dh_t, h_in[t] - n[t], out=d_z[t])
            sigmoid_grad_(d_rz[t], rz[t])
            dh_t.mul_(z[t]).addmm_(d_rows[t], weight_hh)
        need = ctx.needs_input_grad
        d_x, d_weight_ih, d_bias_ih = input_grads(need, x, weight_ih, [d_hid[:, :2 * H], d_xn])
        d_bias_hh = d_hid.sum(0) if need[3] else None
        d_weight_hh = d_hid.t().mm(h_prev)  # (3H, H): one matmul for all steps
        return d_x, d_weight_ih, d_bias_ih, d_bias_hh, dh, d_weight_hh, None, None


def gru_sequence(x: Tensor, weight_ih: Tensor, bias_ih: Tensor | None, bias_hh: Tensor | None,
                 h0: Tensor, weight_hh: Tensor, batch_sizes: list[int], reverse: bool = False):
    """Plain GRU over packed input x (N, I) with torch.nn.GRU's weights and biases (gate rows
    r, z, n; biases both or neither). Returns the packed outputs (N, H) and h_n (B, H)."""
    return _GRUSequence.apply(x, weight_ih, bias_ih, bias_hh, h0, weight_hh, batch_sizes,
                              reverse)
