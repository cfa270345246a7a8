"""The plain LSTM over a whole sequence with hand-written backpropagation through time.

Autograd over a Python time loop records a dozen small ops per step and accumulates the
recurrent weight gradient with one small matmul per step. Here the forward writes every step's
activations into preallocated buffers, and the backward walks the steps once, leaving the
weight gradient to a single (4H, N) @ (N, H) matmul after the loop (../PERF_NOTES.md).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


def _steps(batch_sizes: list[int], reverse: bool) -> list[tuple[int, slice]]:
    """(active rows, packed rows) of each step, in processing order."""
    steps, start = [], 0
    for b in batch_sizes:
        steps.append((b, slice(start, start + b)))
        start += b
    return steps[::-1] if reverse else steps


class _LSTMSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gx: Tensor, h0: Tensor, c0: Tensor, weight_hh: Tensor,
                batch_sizes: list[int], reverse: bool):
        # gx: (N, 4H) packed input projections with both biases; h0, c0: (B, H)
        H = h0.size(1)
        g_rows = slice(2 * H, 3 * H)
        # tanh(x) = 2σ(2x) - 1: doubling the g rows lets one sigmoid serve all four gates,
        # and sigmoid is several times cheaper than tanh on this CPU
        w = weight_hh.t().contiguous()  # (H, 4H)
        w[:, g_rows] *= 2
        acts = gx.clone()
        acts[:, g_rows] *= 2
        N = gx.size(0)
        cs, tanh_cs, hs = (gx.new_empty(N, H) for _ in range(3))
        save = any(ctx.needs_input_grad)
        if save:
            h_prev, c_prev = gx.new_empty(N, H), gx.new_empty(N, H)
        h, c = h0.clone(), c0.clone()
        for b, rows in _steps(batch_sizes, reverse):
            gates = acts[rows].addmm_(h[:b], w).sigmoid_()  # (b, 4H)
            i, f, g, o = gates.chunk(4, 1)
            g.mul_(2).sub_(1)
            if save:
                h_prev[rows], c_prev[rows] = h[:b], c[:b]
            c_t = torch.mul(f, c[:b], out=cs[rows]).addcmul_(i, g)
            tanh_c = torch.mul(c_t, 2, out=tanh_cs[rows]).sigmoid_().mul_(2).sub_(1)
            h[:b] = torch.mul(o, tanh_c, out=hs[rows])
            c[:b] = c_t
        if save:
            ctx.save_for_backward(acts, tanh_cs, h_prev, c_prev, weight_hh)
            ctx.steps = _steps(batch_sizes, not reverse)
        return hs, h, c

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs: Tensor, d_hn: Tensor, d_cn: Tensor):
        acts, tanh_cs, h_prev, c_prev, weight_hh = ctx.saved_tensors
        H = weight_hh.size(1)
        i, f, g, o = acts.chunk(4, 1)
        # local derivatives of every step at once: σ' = s(1 - s), tanh' = 1 - t²
        deriv = acts * (1 - acts)
        deriv[:, 2 * H:3 * H] = 1 - g * g
        o_dtanh_c = o * (1 - tanh_cs * tanh_cs)
        d_gates = torch.empty_like(acts)
        dh, dc = d_hn.clone(), d_cn.clone()
        for b, rows in ctx.steps:
            dh_t = d_hs[rows] + dh[:b]
            dc_t = torch.addcmul(dc[:b], dh_t, o_dtanh_c[rows])
            d_i, d_f, d_g, d_o = d_gates[rows].chunk(4, 1)
            torch.mul(dc_t, g[rows], out=d_i)
            torch.mul(dc_t, c_prev[rows], out=d_f)
            torch.mul(dc_t, i[rows], out=d_g)
            torch.mul(dh_t, tanh_cs[rows], out=d_o)
            d_pre = d_gates[rows].mul_(deriv[rows])
            torch.mul(dc_t, f[rows], out=dc[:b])
            torch.mm(d_pre, weight_hh, out=dh[:b])
        d_weight = d_gates.t().mm(h_prev)  # (4H, H): one matmul for all steps
        return d_gates, dh, dc, d_weight, None, None


def lstm_sequence(gx: Tensor, h0: Tensor, c0: Tensor, weight_hh: Tensor,
                  batch_sizes: list[int], reverse: bool = False):
    """Plain LSTM over packed projections gx (N, 4H); returns outputs (N, H), h_n, c_n."""
    return _LSTMSequence.apply(gx, h0, c0, weight_hh, batch_sizes, reverse)
