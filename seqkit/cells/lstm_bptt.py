"""The plain LSTM over a whole sequence with hand-written backpropagation through time.

Autograd over a Python time loop records a dozen small ops per step and accumulates the
recurrent weight gradient with one small matmul per step. Here the forward writes each step
into preallocated buffers with a handful of in-place ops, and the backward walks the steps
once, leaving the weight gradient to one (4H, N) @ (N, H) matmul after the loop.

Gates here are ordered i, f, o, g (torch's are i, f, g, o): the three sigmoids are then one
contiguous block, so a step needs one sigmoid and one tanh call. ``LSTMCell.sequence``
permutes the weights, not the activations.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

IFOG = (0, 1, 3, 2)  # torch's gate blocks i, f, g, o -> i, f, o, g


def _order(batch_sizes: list[int], reverse: bool) -> range:
    """The steps in processing order."""
    return range(len(batch_sizes) - 1, -1, -1) if reverse else range(len(batch_sizes))


def _previous_rows(batch_sizes: list[int], reverse: bool) -> Tensor:
    """For each packed row, the row of cat(outputs, initial state) that held its input state."""
    starts = [0]
    for b in batch_sizes:
        starts.append(starts[-1] + b)
    index = [torch.empty(0, dtype=torch.long)] * len(batch_sizes)
    before = None  # the previously processed step
    for t in _order(batch_sizes, reverse):
        idx = torch.arange(batch_sizes[t]) + starts[-1]  # rows of the initial state, unless
        if before is not None:  # the sequence ran in the step before
            k = min(batch_sizes[t], batch_sizes[before])
            idx[:k] = torch.arange(starts[before], starts[before] + k)
        index[t], before = idx, t
    return torch.cat(index)


def _blocks(t: Tensor, batch_sizes: list[int], hidden: int, first: int, last: int):
    """Per-step views of gate blocks first..last-1 of a packed (N, 4H) buffer, made in one call
    (slicing inside the loop costs a dispatcher round trip per view)."""
    return t[:, first * hidden:last * hidden].split(batch_sizes)


class _LSTMSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight_ih: Tensor, bias: Tensor | None, h0: Tensor, c0: Tensor,
                weight_hh: Tensor, batch_sizes: list[int], reverse: bool):
        # x: (N, I) packed; weights (4H, *) and bias (4H,) with gates i, f, o, g; h0, c0: (B, H)
        H, N = h0.size(1), x.size(0)
        # the input half of every step in one matmul; the buffer then holds the activations
        acts = x @ weight_ih.t() if bias is None else torch.addmm(bias, x, weight_ih.t())
        w = weight_hh.t().contiguous()  # (H, 4H): contiguous is ~20% faster per step
        cs, tanh_cs, hs = (x.new_empty(N, H) for _ in range(3))
        h_n, c_n = h0.clone(), c0.clone()
        rows = acts.split(batch_sizes)
        sig, tanh = _blocks(acts, batch_sizes, H, 0, 3), _blocks(acts, batch_sizes, H, 3, 4)
        i, f, o, g = (_blocks(acts, batch_sizes, H, k, k + 1) for k in range(4))
        c_out, tanh_c, h_out = (buf.split(batch_sizes) for buf in (cs, tanh_cs, hs))
        h, c = h0, c0  # state of the active rows, a view into the buffers
        for t in _order(batch_sizes, reverse):
            b = batch_sizes[t]
            if b > h.size(0):  # reverse direction: sequences join with their initial state
                h, c = torch.cat((h, h0[h.size(0):b])), torch.cat((c, c0[c.size(0):b]))
            elif b < h.size(0):  # forward direction: sequences that ended keep their state
                h_n[b:h.size(0)], c_n[b:h.size(0)] = h[b:], c[b:]
                h, c = h[:b], c[:b]
            rows[t].addmm_(h, w)
            sig[t].sigmoid_()
            tanh[t].tanh_()
            c = torch.mul(f[t], c, out=c_out[t]).addcmul_(i[t], g[t])
            h = torch.mul(o[t], torch.tanh(c, out=tanh_c[t]), out=h_out[t])
        h_n[:h.size(0)], c_n[:c.size(0)] = h, c
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(x, weight_ih, acts, cs, tanh_cs, hs, h0, c0, weight_hh)
            ctx.batch_sizes, ctx.reverse = batch_sizes, reverse
        return hs, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs: Tensor, d_hn: Tensor, d_cn: Tensor):
        x, weight_ih, acts, cs, tanh_cs, hs, h0, c0, weight_hh = ctx.saved_tensors
        H = weight_hh.size(1)
        prev = _previous_rows(ctx.batch_sizes, ctx.reverse).to(hs.device)
        h_prev = torch.cat((hs, h0)).index_select(0, prev)  # (N, H) input state of each row
        c_prev = torch.cat((cs, c0)).index_select(0, prev)
        d_gates = torch.empty_like(acts)
        dh, dc = d_hn.clone(), d_cn.clone()
        bs = ctx.batch_sizes
        prefix = {b: (dh[:b], dc[:b]) for b in set(bs)}
        sig, g = _blocks(acts, bs, H, 0, 3), _blocks(acts, bs, H, 3, 4)
        i, f, o = (_blocks(acts, bs, H, k, k + 1) for k in range(3))
        d_rows, d_sig = d_gates.split(bs), _blocks(d_gates, bs, H, 0, 3)
        d_i, d_f, d_o, d_g = (_blocks(d_gates, bs, H, k, k + 1) for k in range(4))
        tanh_c, d_out, c_in = (buf.split(bs) for buf in (tanh_cs, d_hs, c_prev))
        for t in _order(bs, not ctx.reverse):
            dh_b, dc_b = prefix[bs[t]]
            dh_t = d_out[t] + dh_b
            # dc_t = dc + dh_t ⋆ o ⋆ (1 - tanh²(c))
            dc_t = torch.addcmul(dc_b, torch.addcmul(dh_t, dh_t * tanh_c[t], tanh_c[t],
                                                     value=-1), o[t])
            torch.mul(dc_t, g[t], out=d_i[t])
            torch.mul(dc_t, c_in[t], out=d_f[t])
            torch.mul(dh_t, tanh_c[t], out=d_o[t])
            torch.mul(dc_t, i[t], out=d_g[t])
            d_sig[t].mul_(sig[t] - sig[t] * sig[t])  # σ' = s (1 - s)
            d_g[t].addcmul_(d_g[t] * g[t], g[t], value=-1)  # tanh' = 1 - g²
            torch.mul(dc_t, f[t], out=dc_b)
            torch.mm(d_rows[t], weight_hh, out=dh_b)
        need = ctx.needs_input_grad
        d_x = d_gates.mm(weight_ih) if need[0] else None
        d_weight_ih = d_gates.t().mm(x) if need[1] else None
        d_bias = d_gates.sum(0) if need[2] else None
        d_weight_hh = d_gates.t().mm(h_prev)  # (4H, H): one matmul for all steps
        return d_x, d_weight_ih, d_bias, dh, dc, d_weight_hh, None, None


def lstm_sequence(x: Tensor, weight_ih: Tensor, bias: Tensor | None, h0: Tensor, c0: Tensor,
                  weight_hh: Tensor, batch_sizes: list[int], reverse: bool = False):
    """Plain LSTM over packed input x (N, I); weights and bias (both biases summed) have their
    gate rows in the order i, f, o, g. Returns the packed outputs (N, H) and h_n, c_n (B, H).
    """
    return _LSTMSequence.apply(x, weight_ih, bias, h0, c0, weight_hh, batch_sizes, reverse)
