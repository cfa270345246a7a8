"""Teacher forcing through an input-fed LSTM decoder with dot/general attention, as one
autograd function with a hand-written backward (CPU).

Input feeding (Luong et al. 2015) makes every decoder step wait for the last one's attention
output, so training loops over the target. Under autograd each step records some twenty
nodes, and the backward pass computes every weight's gradient step by step: T small matrix
products per weight, each added into the gradient. Here the loop runs without autograd,
keeps what the backward needs in (B, T, .) buffers, and the backward walks the steps once,
carrying only the recurrent gradients; the weight, memory and key gradients come after
the loop as one product over all B * T positions each. The embedding half of the decoder's
input projection is likewise one product before the loop. Same arithmetic as
``Decoder.advance`` step by step (``tests/models/test_seq2seq.py`` checks outputs and
gradients against it, and ``tests/models/test_input_feed.py`` gradchecks the backward).

Per step t, with x_t the embedded target token and a_0 = 0:

    gates  = W_e x_t + W_f a_{t-1} + W_hh h_{t-1} + b        i, f, g, o (torch's order)
    c_t    = σ(f) c_{t-1} + σ(i) tanh(g),   h_t = σ(o) tanh(c_t)
    α_t    = softmax(keys h_t) over the source positions the mask keeps
    a_t    = drop_t * tanh(W_c [α_t memory; h_t])
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..matmul import StepMatmul, mm


class InputFedLSTM(torch.autograd.Function):
    """(emb (B, T, E), h0 (B, H), c0 (B, H), memory (B, S, M), keys (B, S, H), mask (B, S)
    bool, w_ih (4H, E + A), w_hh (4H, H), b_ih, b_hh (4H) or None, w_c (A, M + H), drop
    (B, T, A) scaled keep-mask or None, dtype of the matrix products: None for float32, or
    torch.bfloat16 under mixed precision) -> a (B, T, A) and α (B, T, S), not differentiable.
    Everything else runs in float32."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)
    def forward(ctx, emb, h0, c0, memory, keys, mask, w_ih, w_hh, b_ih, b_hh, w_c, drop,
                dtype=None):
        B, T, E = emb.shape
        H, M, A, S = h0.size(1), memory.size(2), w_c.size(0), memory.size(1)
        dtype = dtype or emb.dtype
        w_e = w_ih[:, :E].to(dtype)
        w_fh = torch.cat([w_ih[:, E:], w_hh], 1).to(dtype)     # (4H, A + H): one product
        w_c = w_c.to(dtype)
        pre = mm(emb.reshape(B * T, E), w_e.t())              # the embedding half, at once
        if b_ih is not None:
            pre += b_ih + b_hh
        pre = pre.view(B, T, 4 * H)
        fed = emb.new_empty(B, T + 1, A + H)                   # [a_{t-1}; h_{t-1}] at t
        gates = emb.new_empty(B, T, 4 * H)                     # σ(i), σ(f), tanh(g), σ(o)
        cells = emb.new_empty(B, T + 1, H)                     # c_0 .. c_T
        tanh_c = emb.new_empty(B, T, H)
        both = emb.new_empty(B, T, M + H)                      # [context; h_t]
        acts = emb.new_empty(B, T, A)                          # tanh(W_c [context; h_t])
        alphas = emb.new_empty(B, T, S)
        out = emb.new_empty(B, T, A)
        fed[:, 0, :A], fed[:, 0, A:], cells[:, 0] = 0.0, h0, c0
        masked = ~mask
        step_fh, step_c = (StepMatmul(w, [B] * T) for w in (w_fh, w_c))
        for t in range(T):
            g = step_fh(fed[:, t], base=pre[:, t])
            g[:, :2 * H].sigmoid_()
            g[:, 2 * H:3 * H].tanh_()
            g[:, 3 * H:].sigmoid_()
            i, f, z, o = g.chunk(4, 1)
            c = torch.addcmul(f * cells[:, t], i, z)
            tc = c.tanh()
            h = o * tc
            scores = torch.bmm(keys, h.unsqueeze(2)).squeeze(2).masked_fill_(masked, -torch.inf)
            alpha = scores.softmax(1)
            both[:, t, :M] = torch.bmm(alpha.unsqueeze(1), memory).squeeze(1)
            both[:, t, M:] = h
            a = step_c(both[:, t]).tanh_()
            fed_a = a * drop[:, t] if drop is not None else a
            gates[:, t], cells[:, t + 1], tanh_c[:, t], acts[:, t] = g, c, tc, a
            alphas[:, t], out[:, t] = alpha, fed_a
            fed[:, t + 1, :A], fed[:, t + 1, A:] = fed_a, h
        ctx.save_for_backward(emb, memory, keys, w_e, w_c, w_fh, fed, gates, cells, tanh_c,
                              both, acts, alphas, drop)
        ctx.has_bias = b_ih is not None
        ctx.mark_non_differentiable(alphas)
        return out, alphas

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, d_out, _):
        (emb, memory, keys, w_e, w_c, w_fh, fed, gates, cells, tanh_c, both, acts, alphas,
         drop) = ctx.saved_tensors
        B, T, E = emb.shape
        M, A, H = memory.size(2), w_c.size(0), cells.size(2)
        d_gates, d_acts = torch.empty_like(gates), torch.empty_like(acts)
        d_scores, d_context = torch.empty_like(alphas), emb.new_empty(B, T, M)
        d_fed, d_h, d_c = emb.new_zeros(B, A), emb.new_zeros(B, H), emb.new_zeros(B, H)
        step_c, step_fh = (StepMatmul(w.t(), [B] * T) for w in (w_c, w_fh))
        for t in reversed(range(T)):
            da = d_out[:, t] + d_fed
            if drop is not None:
                da = da * drop[:, t]
            a = acts[:, t]
            du = da - da * a * a                                # through tanh
            d_acts[:, t] = du
            d_both = step_c(du)
            d_context[:, t] = d_both[:, :M]
            alpha = alphas[:, t]
            d_alpha = torch.bmm(memory, d_both[:, :M].unsqueeze(2)).squeeze(2)
            ds = alpha * (d_alpha - (alpha * d_alpha).sum(1, keepdim=True))
            d_scores[:, t] = ds
            dh = d_both[:, M:] + d_h + torch.bmm(ds.unsqueeze(1), keys).squeeze(1)
            i, f, z, o = gates[:, t].chunk(4, 1)
            tc = tanh_c[:, t]
            d_c = d_c + dh * o * (1 - tc * tc)
            dg = d_gates[:, t]
            dg[:, :H] = d_c * z * i * (1 - i)
            dg[:, H:2 * H] = d_c * cells[:, t] * f * (1 - f)
            dg[:, 2 * H:3 * H] = d_c * i * (1 - z * z)
            dg[:, 3 * H:] = dh * tc * o * (1 - o)
            d_c = d_c * f
            d_x = step_fh(dg)
            d_fed, d_h = d_x[:, :A], d_x[:, A:]
        flat = d_gates.view(B * T, -1)
        needs = ctx.needs_input_grad
        d_emb = mm(flat, w_e).view(B, T, E) if needs[0] else None
        d_memory = torch.bmm(alphas.transpose(1, 2), d_context) if needs[3] else None
        d_keys = torch.bmm(d_scores.transpose(1, 2), both[:, :, M:]) if needs[4] else None
        low = flat.t().to(w_fh.dtype)
        d_w_fh = mm(fed[:, :T].reshape(B * T, -1).t(), low.t()).t()
        d_w_ih = torch.cat([mm(emb.reshape(B * T, E).t(), low.t()).t(), d_w_fh[:, :A]], 1)
        d_bias = flat.sum(0) if ctx.has_bias else None
        d_w_c = mm(d_acts.view(B * T, A).to(w_c.dtype).t(),  # d_acts.T @ both: w_c's layout
                   both.view(B * T, -1).to(w_c.dtype)).to(both.dtype)
        return (d_emb, d_h, d_c, d_memory, d_keys, None, d_w_ih, d_w_fh[:, A:], d_bias,
                d_bias, d_w_c, None, None)
