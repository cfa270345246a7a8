"""The GRU, with every option of ``GRUCell``, over a whole sequence with hand-written BPTT.

Per step, in the cell's equations (``cells/gru.py``), with x_* the input half gx (the input
matmul, its layer norm and b_ih) and rec(.) = [LN](W_h* .) + b_h* the recurrent half::

    cuDNN's form (reset_after)                  the article's form (reset_after=False)
    r, z = σ(x_rz + rec_rz(h ⋆ mask))           the same
    n = tanh(x_n + r ⋆ rec_n(h ⋆ mask))         n = tanh(x_n + rec_n(r ⋆ h ⋆ mask))
    h' = (1 - z) ⋆ n + z ⋆ h,   h = lerp(h', h, keep)   (zoneout)

The buffer ``rec`` (N, 3H) keeps the recurrent half, ``rz`` (N, 2H) the gates and ``ns``
(N, H) the candidates: all the backward needs besides the states.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .bptt import (blocks, carry, gate_norm, input_states, norm_stats, order, recurrent,
                   recurrent_grad, recurrent_weight_grads, rows, save, sigmoid_grad_,
                   state_grads, steps, tanh, tanh_grad, zoneout_grad)
from ..matmul import StepMatmul


class _GRUSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gx, h0, weight_hh, bias_hh, gain, mask, keep, batch_sizes, reverse,
                reset_after):
        # gx (N, 3H) packed, gates r, z, n; h0 (B, H); weight_hh (3H, H), bias_hh and the layer
        # norm gain (3H,); mask (B, H); keep (N, H), a rate or None
        H, N, bs = h0.size(1), gx.size(0), batch_sizes
        rec, rz, ns = (gx.new_empty(N, k * H) for k in (3, 2, 1))
        raw = None if gain is None else torch.empty_like(gx)  # W_h* . before its layer norm
        h_new = gx.new_empty(N, H)
        hs = h_new if keep is None else torch.empty_like(h_new)  # the outputs, zoneout applied
        rh = None if reset_after else torch.empty_like(h_new)  # r ⋆ h ⋆ mask
        h_n = h0.clone()
        if reset_after:
            w = StepMatmul(weight_hh, bs)
            if gain is None:  # the steps add W_hh h in place
                rec[:] = 0 if bias_hh is None else bias_hh
        else:  # two matmuls: rz, then n of r ⋆ h
            w = [StepMatmul(m, bs) for m in weight_hh.split(2 * H)]
            gain_ = (None, None) if gain is None else gain.split(2 * H)
            bias = (None, None) if bias_hh is None else bias_hh.split(2 * H)
        gx_rz, gx_n = blocks(gx, bs, H, 0, 2), blocks(gx, bs, H, 2, 3)
        rec_, rec_rz, rec_n = rec.split(bs), blocks(rec, bs, H, 0, 2), blocks(rec, bs, H, 2, 3)
        raw_, raw_rz, raw_n = steps(raw, bs), blocks(raw, bs, H, 0, 2), blocks(raw, bs, H, 2, 3)
        r, z = blocks(rz, bs, H, 0, 1), blocks(rz, bs, H, 1, 2)
        rz_, n_, h_new_, hs_, rh_, kh = (steps(b, bs) for b in (rz, ns, h_new, hs, rh, keep))
        h = h0  # state of the active rows, a view into hs
        for t in order(bs, reverse):
            (h,) = carry((h,), (h0,), (h_n,), bs[t])
            hd = h if mask is None else h * mask[:bs[t]]
            if reset_after:
                if gain is None:
                    w(hd, rec_[t], rec_[t])
                else:
                    recurrent(bias_hh, hd, w, gain, 3, raw_[t], rec_[t])
                torch.add(gx_rz[t], rec_rz[t], out=rz_[t]).sigmoid_()
                n = tanh(torch.addcmul(gx_n[t], r[t], rec_n[t], out=n_[t]), n_[t])
            else:
                recurrent(bias[0], hd, w[0], gain_[0], 2, raw_rz[t], rec_rz[t])
                torch.add(gx_rz[t], rec_rz[t], out=rz_[t]).sigmoid_()
                rhd = torch.mul(r[t], hd, out=rh_[t])
                recurrent(bias[1], rhd, w[1], gain_[1], 1, raw_n[t], rec_n[t])
                n = tanh(torch.add(gx_n[t], rec_n[t], out=n_[t]), n_[t])
            hn = torch.lerp(n, h, z[t], out=h_new_[t])  # n + z ⋆ (h - n)
            h = hn if keep is None else torch.lerp(hn, h, kh[t], out=hs_[t])
        carry((h,), (h0,), (h_n,), 0)
        save(ctx, bs, reverse, rec, rz, ns, raw, rh, hs, h0, weight_hh, gain, mask)
        ctx.keep, ctx.reset_after = keep, reset_after
        return hs, h_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs: Tensor, d_hn: Tensor):
        rec, rz, ns, raw, rh, hs, h0, weight_hh, gain, mask = ctx.saved_tensors
        H, bs, reset_after = h0.size(1), ctx.batch_sizes, ctx.reset_after
        (h_prev,) = input_states(bs, ctx.reverse, (hs, h0))  # (N, H)
        hd_prev = h_prev if mask is None else h_prev * rows(mask, bs)
        d_gx = torch.empty_like(rec)  # of the input half, r, z, n
        d_rec = torch.empty_like(rec)  # of the recurrent half
        d_raw = d_rec if gain is None else torch.empty_like(raw)
        d_rh = None if reset_after else torch.empty_like(ns)
        normed, stats = None, [None] * len(bs)
        if not reset_after:
            stats = [stats, stats]
        if gain is not None:  # per gate: the statistics over all steps at once
            normed, mean, rstd = norm_stats(raw, 3)
            if reset_after:
                stats = list(zip(mean.split(bs), rstd.split(bs)))
            else:
                stats = [list(zip(m.contiguous().split(bs), s.contiguous().split(bs))) for m, s in
                         ((mean[:, :2], rstd[:, :2]), (mean[:, 2:], rstd[:, 2:]))]
        w_t = [StepMatmul(m.t(), bs) for m in ((weight_hh,) if reset_after else
                                                weight_hh.split(2 * H))]
        g_rz, g_n = (None, None) if gain is None else gain.split(2 * H)
        r, z = blocks(rz, bs, H, 0, 1), blocks(rz, bs, H, 1, 2)
        rec_n = blocks(rec, bs, H, 2, 3)
        d_gx_rz, d_r, d_z, d_gx_n = (blocks(d_gx, bs, H, *k) for k in ((0, 2), (0, 1), (1, 2),
                                                                       (2, 3)))
        d_rec_, d_rec_rz, d_rec_n = (d_rec.split(bs), blocks(d_rec, bs, H, 0, 2),
                                     blocks(d_rec, bs, H, 2, 3))
        d_raw_, d_raw_rz, d_raw_n = (d_raw.split(bs), blocks(d_raw, bs, H, 0, 2),
                                     blocks(d_raw, bs, H, 2, 3))
        raw_, raw_rz, raw_n = steps(raw, bs), blocks(raw, bs, H, 0, 2), blocks(raw, bs, H, 2, 3)
        rz_, n, h_in, hd_in, d_out, rh_, d_rh_, kh = (
            steps(b, bs) for b in (rz, ns, h_prev, hd_prev, d_hs, rh, d_rh, ctx.keep))
        (dh,), prefix = state_grads(bs, d_hn)
        for t in order(bs, not ctx.reverse):
            (dh_b,) = prefix[bs[t]]
            d_h, dh_kept = zoneout_grad(d_out[t] + dh_b, kh[t])
            # n's pre-activation: d_h ⋆ (1 - z) ⋆ tanh'; z's gradient comes through h - n
            tanh_grad(torch.addcmul(d_h, d_h, z[t], value=-1), n[t], out=d_gx_n[t])
            torch.mul(d_h, h_in[t] - n[t], out=d_z[t])
            if reset_after:  # r's gradient comes through rec_n
                torch.mul(d_gx_n[t], r[t], out=d_rec_n[t])
                torch.mul(d_gx_n[t], rec_n[t], out=d_r[t])
                sigmoid_grad_(d_gx_rz[t], rz_[t])
                d_rec_rz[t].copy_(d_gx_rz[t])
                dhd = recurrent_grad(d_rec_[t], w_t[0], gain, stats[t], raw_[t], d_raw_[t])
            else:  # r's gradient comes through r ⋆ h ⋆ mask
                d_rec_n[t].copy_(d_gx_n[t])
                d_rhd = recurrent_grad(d_rec_n[t], w_t[1], g_n, stats[1][t], raw_n[t], d_raw_n[t],
                                       d_rh_[t])
                torch.mul(d_rhd, hd_in[t], out=d_r[t])
                sigmoid_grad_(d_gx_rz[t], rz_[t])
                d_rec_rz[t].copy_(d_gx_rz[t])
                dhd = recurrent_grad(d_rec_rz[t], w_t[0], g_rz, stats[0][t], raw_rz[t],
                                     d_raw_rz[t]).addcmul_(d_rhd, r[t])
            torch.mul(d_h, z[t], out=dh_b)
            dh_b.add_(dhd if mask is None else dhd * mask[:bs[t]])
            if dh_kept is not None:
                dh_b.add_(dh_kept)
        need = ctx.needs_input_grad
        if reset_after:
            d_weight_hh, d_gain = recurrent_weight_grads(need[2:5:2], d_raw, d_rec, hd_prev,
                                                         normed)
        else:
            parts = [recurrent_weight_grads(need[2:5:2], d_raw[:, cols], d_rec[:, cols], h,
                                            None if normed is None else normed[:, cols])
                     for cols, h in ((slice(0, 2 * H), hd_prev), (slice(2 * H, None), rh))]
            d_weight_hh = torch.cat([p[0] for p in parts]) if need[2] else None
            d_gain = torch.cat([p[1] for p in parts]) if gain is not None and need[4] else None
        d_bias_hh = d_rec.sum(0) if need[3] else None
        return d_gx, dh, d_weight_hh, d_bias_hh, d_gain, None, None, None, None, None


def run(cell, x: Tensor, batch_sizes: list[int], state: tuple[Tensor], reverse: bool,
        mask: Tensor | None, keep: tuple) -> tuple[Tensor, tuple[Tensor]]:
    """``cell.sequence`` (a GRUCell with any options) on the kernel: packed x (N, I), state
    (h0,), the noise ``cell.noise`` drew. Returns the packed outputs and (h_n,)."""
    out, h = _GRUSequence.apply(cell.project(x, norm=gate_norm), *state, cell.weight_hh,
                                cell.bias_hh, getattr(cell, "ln_hh_weight", None), mask, *keep,
                                batch_sizes, reverse, cell.reset_after)
    return out, (h,)
