"""The LSTM, with every option of ``LSTMCell``, over a whole sequence with hand-written BPTT.

The forward writes each step into preallocated buffers with a handful of in-place ops; the
backward walks the steps once and leaves every weight gradient to one large op after the
loop (see ``bptt`` for the machinery the RNN, GRU and LSTM share). Per step, in the cell's
equations (``cells/lstm.py``), with the options where they act::

    gates = gx + [LN](W_hh (h ⋆ mask))             layer norm per gate, times its gain
    i, f += p_i ⋆ c, p_f ⋆ c                        peephole
    i, f, o = σ(.), g = tanh(.)                     coupled: i = 1 - f
    c' = f ⋆ c + i ⋆ g
    o = σ(o + p_o ⋆ c')                             peephole
    h' = [W_hr] (o ⋆ tanh([LN] c'))                 projection, layer norm of c
    h, c = lerp(h', h, keep_h), lerp(c', c, keep_c) zoneout

Gates are in torch's order, i, f, g, o (coupled: f, g, o), the cell's own: its weights go in
as they are.

On CPU (float32, float64) the whole time loop runs in C++ (``csrc/lstm.cpp``, see ``native``):
each step's products on oneDNN (float32: its brgemm kernel on the weight the loop packs), its
gate math in one vectorised pass a row; elsewhere, or where it cannot be built, as the torch
ops below, the same equations.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .bptt import (blocks, carry, column_sums, folded_bias, input_args, input_half,
                   input_half_grads, input_states, norm_grad, norm_stats, order, recurrent,
                   recurrent_grad, recurrent_weight_grads, rows, save, sigmoid_grad_,
                   state_grads, steps, tanh, tanh_grad, zoneout_grad)
from ..matmul import StepMatmul, linear, mm
from . import native


class _LSTMSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gx, weight_ih, bias, h0, c0, weight_hh, gain, weight_ch, weight_hr,
                ln_c_weight, ln_c_bias, in_gain, mask, keep_h, keep_c, batch_sizes, reverse,
                coupled):
        # gx: x (N, I) packed, with weight_ih (G*H, I) and bias (G*H,) both biases summed; or
        # without weight_ih the input half (N, G*H) computed outside (layer norm): with in_gain
        # (G*H,) (C++ loop only) the raw W_ih x, which the loop normalises (gates = LN(gx) ⋆
        # in_gain + bias + ...), without it the whole input half, bias None; h0 (B, P),
        # c0 (B, H); weight_hh (G*H, P) and the layer norm gain (G*H,); weight_ch (S*H,)
        # peepholes i, f, o (coupled: f, o); weight_hr (P, H);
        # mask (B, P); keep_h (N, P), keep_c (N, H): tensors, rates or None
        H, P, N, bs = c0.size(1), h0.size(1), gx.size(0), batch_sizes
        S = 2 if coupled else 3  # sigmoid gates
        fused = native.module() if native.usable(gx, h0, c0, weight_hh) else None
        # Inference in C++ keeps nothing for a backward: every buffer but the outputs (and the
        # input half, where the steps add to it in place) holds one step, bs[0] rows, that
        # the loop reuses (csrc/lstm.cpp's Steps), so the sequence's buffers are not touched.
        R = bs[0] if fused is not None and not any(ctx.needs_input_grad) else N
        acts = input_half(gx, weight_ih, bias, R)  # then the activations, in place
        base = acts if weight_ih is not None else gx  # what the recurrent half adds to
        raw = None if gain is None else torch.empty_like(acts)  # W_hh h before its layer norm
        (c_new, tanh_cs), hs = (gx.new_empty(R, H) for _ in range(2)), gx.new_empty(N, P)
        kept = (None, None, None)  # the C++ loop's, for layer norm's backward: raw normalised,
        if fused is not None:      # and these: 1/std of each gate's raw, ĉ', 1/std of c'
            kept = (None if gain is None else acts.new_empty(R, S + 1),
                    *((None, None) if ln_c_weight is None else (torch.empty_like(c_new),
                                                                c_new.new_empty(R))))
        elif in_gain is not None:
            raise ValueError("the input half's layer norm in the loop is the C++ loop's")
        # the input half's layer norm: each gate's mean and 1/std
        in_stats = None if in_gain is None else acts.new_empty(R, 2 * (S + 1))
        cs = c_new if keep_c is None else torch.empty_like(c_new)  # the carried c
        h_new = hs if keep_h is None else hs.new_empty(R, P)
        h_raw = None if weight_hr is None else torch.empty_like(c_new)  # o ⋆ tanh(c)
        h_n, c_n = h0.clone(), c0.clone()
        if fused is not None:  # the whole loop in C++
            fused.forward_loop(bs, reverse, acts, base, raw, *_operand(weight_hh, bs), gain,
                               weight_ch, ln_c_weight, ln_c_bias, coupled, c_new, cs, tanh_cs,
                               hs, h_new, h_raw, *_operand(weight_hr, bs), *kept, h0, c0, h_n,
                               c_n, mask,
                               *_keep(keep_h), *_keep(keep_c), in_gain,
                               None if in_gain is None else bias, in_stats)
        else:  # the same loop as torch ops
            w, w_hr = (None if m is None else StepMatmul(m, bs) for m in (weight_hh, weight_hr))
            if weight_ch is not None:
                p_before, p_o = weight_ch[:(S - 1) * H].view(S - 1, H), weight_ch[(S - 1) * H:]
            before = blocks(acts, bs, H, 0, S - 1)  # i, f (coupled: f): before g, o
            f, g, o = (blocks(acts, bs, H, k, k + 1) for k in (S - 2, S - 1, S))
            i = None if coupled else blocks(acts, bs, H, 0, 1)
            base_, acts_, raw_, c_new_, cs_, tanh_, hs_, h_new_, h_raw_ = (
                steps(b, bs) for b in (base, acts, raw, c_new, cs, tanh_cs, hs, h_new, h_raw))
            kh, kc = steps(keep_h, bs), steps(keep_c, bs)
            h, c = h0, c0  # state of the active rows, a view into the buffers
            for t in order(bs, reverse):
                h, c = carry((h, c), (h0, c0), (h_n, c_n), bs[t])
                hd = h if mask is None else h * mask[:bs[t]]
                out = h_new_[t] if w_hr is None else h_raw_[t]  # o ⋆ tanh([LN] c')
                recurrent(base_[t], hd, w, gain, S + 1, raw_[t], acts_[t])
                if weight_ch is None:
                    before[t].sigmoid_()
                    o[t].sigmoid_()
                else:
                    before[t].unflatten(1, (S - 1, H)).addcmul_(c.unsqueeze(1),
                                                                p_before).sigmoid_()
                tanh(g[t], g[t])
                if coupled:
                    torch.lerp(g[t], c, f[t], out=c_new_[t])  # f ⋆ c + (1 - f) ⋆ g
                else:
                    torch.mul(f[t], c, out=c_new_[t]).addcmul_(i[t], g[t])
                if weight_ch is not None:
                    o[t].addcmul_(c_new_[t], p_o).sigmoid_()
                shown = c_new_[t] if ln_c_weight is None else F.layer_norm(
                    c_new_[t], (H,), ln_c_weight, ln_c_bias)
                torch.mul(o[t], tanh(shown, tanh_[t]), out=out)
                cn = c_new_[t]
                hn = out if w_hr is None else w_hr(out, h_new_[t])
                h = hn if keep_h is None else torch.lerp(hn, h, kh[t], out=hs_[t])
                c = cn if keep_c is None else torch.lerp(cn, c, kc[t], out=cs_[t])
            carry((h, c), (h0, c0), (h_n, c_n), 0)
        save(ctx, bs, reverse, acts, raw, weight_hh, gain, weight_ch, weight_hr, ln_c_weight,
             c_new, cs, tanh_cs, h_raw, hs, h0, c0, mask,
             None if weight_ih is None and in_gain is None else gx,  # x or the raw input half
             weight_ih, in_gain, in_stats, *kept)
        ctx.keep, ctx.coupled, ctx.fused = (keep_h, keep_c), coupled, fused is not None
        return hs, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs: Tensor, d_hn: Tensor, d_cn: Tensor):
        (acts, raw, weight_hh, gain, weight_ch, weight_hr, ln_c_weight, c_new, cs, tanh_cs, h_raw,
         hs, h0, c0, mask, x, weight_ih, in_gain, in_stats, *kept) = ctx.saved_tensors
        H, bs, coupled = c0.size(1), ctx.batch_sizes, ctx.coupled
        S = 2 if coupled else 3
        fused, need = native.module() if ctx.fused else None, ctx.needs_input_grad
        # the h each row's matmul saw, and c (the C++ loop finds c in cs and c0 itself)
        need_c = fused is None or weight_ch is not None
        states = input_states(bs, ctx.reverse, (hs, h0), *([(cs, c0)] if need_c else []))
        h_prev, c_prev = states[0], states[1] if need_c else None
        d_gates = torch.empty_like(acts)  # of the gate pre-activations
        d_raw = d_gates if gain is None else torch.empty_like(raw)
        d_h_new = None if weight_hr is None else torch.empty_like(hs)
        (dh, dc), prefix = state_grads(bs, d_hn, d_cn)  # rewritten in place by the loop
        d_in = d_in_gain = None  # of the raw input half, into d_gates where nothing reads that
        if in_gain is not None:  # after the loop (the peepholes' gradient does)
            d_in = d_gates if weight_ch is None else torch.empty_like(d_gates)
        if fused is not None:  # the whole loop in C++, from what the forward kept for layer
            # norm's backward (raw holds the normalised W_hh h); it sums the gradients of the
            d_gain, *d_ln_c, d_bias, d_in_gain = fused.backward_loop(  # gain, ln_c's weight
                bs, ctx.reverse, d_hs, dh, dc, acts, cs, c0, tanh_cs, weight_ch, ln_c_weight,
                gain, raw, *kept, coupled, d_gates, None if gain is None else d_raw, d_h_new,
                *_operand(weight_hh.t(), bs),
                *_operand(None if weight_hr is None else weight_hr.t(), bs), mask,
                *_keep(ctx.keep[0]), *_keep(ctx.keep[1]), need[2],  # and the bias's, in_gain's
                in_gain, None if in_gain is None else x, in_stats, d_in)
            normed = None  # (nothing for recurrent_weight_grads to sum)
        else:  # the same loop as torch ops
            w_t, w_hr_t = (None if m is None else StepMatmul(m.t(), bs)
                           for m in (weight_hh, weight_hr))
            normed = d_gain = d_bias = None  # (the gain's and bias's gradients after the loop)
            stats, stats_c = [(None, None)] * len(bs), [(None, None)] * len(bs)
            if gain is not None:  # each step's means and rstds, of the gates' layer norm
                normed, mean, rstd = norm_stats(raw, S + 1)
                stats = list(zip(mean.split(bs), rstd.split(bs)))
            d_shown = None  # d of LN(c')
            if ln_c_weight is not None:  # and of c's
                d_shown = torch.empty_like(c_new)
                c_hat, mean_c, rstd_c = norm_stats(c_new, 1)
                stats_c = list(zip(mean_c.split(bs), rstd_c.split(bs)))
            if weight_ch is not None:
                p_before, p_o = weight_ch[:(S - 1) * H].view(S - 1, H), weight_ch[(S - 1) * H:]
            before = blocks(acts, bs, H, 0, S - 1)  # per-step views of the gate blocks
            f, g, o = (blocks(acts, bs, H, k, k + 1) for k in (S - 2, S - 1, S))
            i = None if coupled else blocks(acts, bs, H, 0, 1)
            d_before = blocks(d_gates, bs, H, 0, S - 1)
            d_f, d_g, d_o = (blocks(d_gates, bs, H, k, k + 1) for k in (S - 2, S - 1, S))
            d_i = None if coupled else blocks(d_gates, bs, H, 0, 1)
            d_peeped = [d_f] if coupled else [d_i, d_f]  # the gates whose peepholes see c
            d_gates_, d_raw_, raw_, c_new_, c_in, tanh_, d_out, d_h_new_, d_shown_ = (
                steps(b, bs) for b in (d_gates, d_raw, raw, c_new, c_prev, tanh_cs, d_hs,
                                        d_h_new, d_shown))
            kh, kc = steps(ctx.keep[0], bs), steps(ctx.keep[1], bs)
            for t in order(bs, not ctx.reverse):
                dh_b, dc_b = prefix[bs[t]]
                d_h, dh_kept = zoneout_grad(d_out[t] + dh_b, kh[t])  # of h' and (zoneout) h
                d_c, dc_kept = zoneout_grad(dc_b, kc[t])
                if weight_hr is not None:
                    d_h = w_hr_t(d_h_new_[t].copy_(d_h))  # of o ⋆ tanh(c)
                torch.mul(d_h, tanh_[t], out=d_o[t])
                if ln_c_weight is None:
                    d_c = d_c + tanh_grad(d_h * o[t], tanh_[t])
                else:
                    d_ln = tanh_grad(d_h * o[t], tanh_[t], out=d_shown_[t])
                    d_c = d_c + norm_grad(d_ln, c_new_[t], *stats_c[t], ln_c_weight)
                if weight_ch is not None:
                    d_c.addcmul_(sigmoid_grad_(d_o[t], o[t]), p_o)
                if coupled:  # c' = f ⋆ c + (1 - f) ⋆ g
                    torch.mul(d_c, c_in[t] - g[t], out=d_f[t])
                    torch.addcmul(d_c, d_c, f[t], value=-1, out=d_g[t])
                else:
                    torch.mul(d_c, g[t], out=d_i[t])
                    torch.mul(d_c, c_in[t], out=d_f[t])
                    torch.mul(d_c, i[t], out=d_g[t])
                sigmoid_grad_(d_before[t], before[t])
                if weight_ch is None:  # with peepholes, done above
                    sigmoid_grad_(d_o[t], o[t])
                tanh_grad(d_g[t], g[t], out=d_g[t])
                torch.mul(d_c, f[t], out=dc_b)
                if weight_ch is not None:  # the peepholes into i and f saw c
                    for d, p in zip(d_peeped, p_before):
                        dc_b.addcmul_(d[t], p)
                if dc_kept is not None:
                    dc_b.add_(dc_kept)
                recurrent_grad(d_gates_[t], w_t, gain, stats[t], raw_[t], d_raw_[t], dh_b)
                if mask is not None:
                    dh_b.mul_(mask[:bs[t]])
                if dh_kept is not None:
                    dh_b.add_(dh_kept)
            d_ln_c = (None, None)
            if ln_c_weight is not None:
                d_ln_c = column_sums(d_shown, c_hat)
        if mask is not None:
            h_prev = h_prev * rows(mask, bs)  # what the recurrent matmul saw
        d_weight_hh, summed = recurrent_weight_grads(need[5:7], d_raw, d_gates, h_prev, normed)
        d_gain = d_gain if fused is not None else summed
        d_weight_ch = None
        if weight_ch is not None and need[7]:
            d_weight_ch = torch.cat([
                (d_gates[:, :(S - 1) * H].unflatten(1, (S - 1, H)) * c_prev[:, None]).sum(0),
                (d_gates[:, S * H:] * c_new).sum(0, keepdim=True)]).flatten()
        d_weight_hr = mm(d_h_new.t(), h_raw) if weight_hr is not None and need[8] else None
        inputs = ((d_in, None, d_bias) if in_gain is not None
                  else input_half_grads(need, x, weight_ih, d_gates, d_bias))
        return (*inputs, dh, dc, d_weight_hh, d_gain, d_weight_ch, d_weight_hr, *d_ln_c,
                d_in_gain, None, None, None, None, None, None)


def _operand(m: Tensor | None, batch_sizes: list[int]) -> tuple[Tensor | None, int]:
    """x @ m.T as the C++ loop takes it, and how (csrc/lstm.cpp's Product): 2, m itself, which
    the loop packs for oneDNN's brgemm kernel (float32, where the build has it); else a
    StepMatmul's weight: 1, oneDNN's reordered one; 0, the transposed copy for at::mm."""
    if m is None:
        return None, 0
    if m.dtype == torch.float32 and native.module().has_brgemm:
        return m, 2
    w = StepMatmul(m, batch_sizes)
    return (w.weight, 1) if w.on_onednn else (w.weight_t, 0)


def _keep(keep: Tensor | float | None) -> tuple[Tensor | None, float | None]:
    """Zoneout's keep as the C++ loop takes it: a mask, or a rate."""
    return (None, float(keep)) if isinstance(keep, (int, float)) else (keep, None)


def run(cell, x: Tensor, batch_sizes: list[int], state: tuple[Tensor, Tensor], reverse: bool,
        mask: Tensor | None, keep: tuple) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``cell.sequence`` (an LSTMCell with any options) on the kernel: packed x (N, I), state
    (h0, c0), the noise ``cell.noise`` drew. Returns the packed outputs and (h_n, c_n)."""
    ln = (cell.ln_c_weight, cell.ln_c_bias) if cell.layer_norm else (None, None)
    if cell.layer_norm and native.usable(x, *state, cell.weight_hh):  # the C++ loop normalises
        inputs, in_gain = (linear(x, cell.weight_ih), None, folded_bias(cell)), cell.ln_ih_weight
    else:  # the input half itself
        inputs, in_gain = input_args(cell, x), None
    out, h, c = _LSTMSequence.apply(
        *inputs, *state, cell.weight_hh, getattr(cell, "ln_hh_weight", None),
        getattr(cell, "weight_ch", None), getattr(cell, "weight_hr", None), *ln, in_gain, mask,
        *keep, batch_sizes, reverse, cell.coupled)
    return out, (h, c)
