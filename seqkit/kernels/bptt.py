"""What the hand-written BPTT functions of the RNN, GRU and LSTM share.

Each runs a whole packed sequence (time-major rows, ``batch_sizes[t]`` rows at step t, batch
sorted by decreasing length) in one ``torch.autograd.Function``. Autograd over a Python time
loop records a dozen small ops per step and accumulates the recurrent weight gradient with
one small matmul per step; these functions instead write each step into preallocated buffers
with a handful of in-place ops, and the backward walks the steps once and leaves the weight
gradients to a few large matmuls after the loop.

The input half of every step does not depend on the state, so it is one matmul over the whole
sequence before the loop. The LSTM and RNN functions make it themselves, both biases folded,
into the buffer the steps then add to in place (``input_half``); with layer norm, and for the
GRU, ``cell.project`` computes it outside under autograd and the function takes its result
``gx`` (N, G*H) and returns its gradient.

Here live the parts that do not depend on the cell: the step order, the per-step views, layer
norm, zoneout and recurrent dropout, the recurrent half of a step and its gradient, how the
state of the active rows is carried from step to step (forward) and how the state gradient
shrinks or grows with them (backward), and the weight gradients.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..cells.base import gate_norm as cells_gate_norm
from ..matmul import StepMatmul, mm
from . import native

EPS = 1e-5  # layer norm's epsilon, F.layer_norm's default as in the cells


def order(batch_sizes: list[int], reverse: bool) -> range:
    """The steps in processing order."""
    return range(len(batch_sizes) - 1, -1, -1) if reverse else range(len(batch_sizes))


def blocks(t: Tensor | None, batch_sizes: list[int], hidden: int, first: int, last: int):
    """Per-step views of gate blocks first..last-1 of a packed (N, G*H) buffer, made in one call
    (slicing inside the loop costs a dispatcher round trip per view); Nones for no buffer."""
    if t is None:
        return [None] * len(batch_sizes)
    return t[:, first * hidden:last * hidden].split(batch_sizes)


def carry(states: tuple[Tensor, ...], initial: tuple[Tensor, ...], finals: tuple[Tensor, ...],
          b: int) -> tuple[Tensor, ...]:
    """The states (n, S) of the rows active at the last step, cut or grown to the next step's b.

    Forward direction the batch shrinks: the rows past b have ended, so their state is final
    and goes to ``finals`` (B, S). Reverse direction it grows: rows joining start from
    ``initial`` (B, S). ``b = 0`` after the loop stores the last states in ``finals``.
    """
    n = states[0].size(0)
    if b == n:  # most steps: no tensor op at all
        return states
    if b > n:
        return tuple(torch.cat((s, s0[n:b])) for s, s0 in zip(states, initial))
    for s, f in zip(states, finals):
        f[b:n] = s[b:]
    return tuple(s[:b] for s in states)


def save(ctx, batch_sizes: list[int], reverse: bool, *tensors: Tensor) -> None:
    """Keep what the backward needs, unless no input needs a gradient (inference)."""
    if any(ctx.needs_input_grad):
        ctx.save_for_backward(*tensors)
        ctx.batch_sizes, ctx.reverse = batch_sizes, reverse


def _previous_rows(batch_sizes: list[int], reverse: bool) -> Tensor:
    """For each packed row, the row of cat(outputs, initial state) that held its input state."""
    starts = [0]
    for b in batch_sizes:
        starts.append(starts[-1] + b)
    index = [torch.empty(0, dtype=torch.long)] * len(batch_sizes)
    before = None  # the previously processed step
    for t in order(batch_sizes, reverse):
        idx = torch.arange(batch_sizes[t]) + starts[-1]  # rows of the initial state, unless
        if before is not None:  # the sequence ran in the step before
            k = min(batch_sizes[t], batch_sizes[before])
            idx[:k] = torch.arange(starts[before], starts[before] + k)
        index[t], before = idx, t
    return torch.cat(index)


def input_states(batch_sizes: list[int], reverse: bool,
                 *pairs: tuple[Tensor, Tensor]) -> list[Tensor]:
    """For each (outputs (N, S), initial (B, S)) pair, the state (N, S) each packed row read."""
    b = batch_sizes[0]
    if all(n == b for n in batch_sizes):  # sequences of one length: the rows one step back
        return [torch.cat((out[b:], h0) if reverse else (h0, out[:-b])) for out, h0 in pairs]
    prev = _previous_rows(batch_sizes, reverse).to(pairs[0][0].device)
    return [torch.cat(pair).index_select(0, prev) for pair in pairs]


def state_grads(batch_sizes: list[int], *finals: Tensor):
    """The running state gradients (B, S), first those of the final states ``finals``; the
    backward rewrites them, step by step, into those of the initial state. Also views of their
    first b rows, one tuple per batch size b, made once: step t reads and rewrites the rows of
    its active sequences."""
    grads = tuple(g.clone(memory_format=torch.contiguous_format) for g in finals)  # (rows of
    # unit stride, as the C++ loop reads them, whatever the layout of the gradient that came)
    return grads, {b: tuple(g[:b] for g in grads) for b in set(batch_sizes)}


def sigmoid_grad_(d: Tensor, s: Tensor) -> Tensor:
    """d ⋆ σ'(a) in place, from s = σ(a): σ' = s - s²."""
    return d.mul_(torch.addcmul(s, s, s, value=-1))


def tanh(x: Tensor, out: Tensor | None = None) -> Tensor:
    """tanh(x) into ``out`` (which may be x itself), on CPU as 2σ(2x) - 1, the same to
    rounding: torch's CPU tanh takes about 2.5 ns an element, its sigmoid a tenth of that."""
    if x.device.type != "cpu":
        return torch.tanh(x, out=out)
    return torch.mul(x, 2, out=out).sigmoid_().mul_(2).sub_(1)


def tanh_grad(d: Tensor, y: Tensor, out: Tensor | None = None) -> Tensor:
    """d ⋆ tanh'(a) from y = tanh(a): tanh' = 1 - y². ``out`` may be d itself."""
    return torch.addcmul(d, d * y, y, value=-1, out=out)


def steps(t: Tensor | float | None, batch_sizes: list[int]) -> list:
    """Per-step rows of a packed (N, *) tensor; a number or None stands for every step."""
    return t.split(batch_sizes) if isinstance(t, Tensor) else [t] * len(batch_sizes)


def rows(mask: Tensor | None, batch_sizes: list[int]) -> Tensor | None:
    """A per-sequence (B, *) tensor laid out as the packed rows: step t has sequences 0..b-1."""
    return None if mask is None else torch.cat([mask[:b] for b in batch_sizes])


def norm(raw: Tensor, gates: int) -> Tensor:
    """Layer norm of each gate's block of raw (b, G*H), without gain: as ``cells.gate_norm``."""
    return F.layer_norm(raw.unflatten(1, (gates, -1)), (raw.size(1) // gates,)).flatten(1)


def norm_stats(raw: Tensor, gates: int) -> tuple[Tensor, Tensor, Tensor]:
    """For the backward, over all steps at once: the normalised raw (N, G*H) and its per-gate
    means and reciprocal standard deviations (N, G, 1)."""
    H = raw.size(1) // gates
    y, mean, rstd = torch.native_layer_norm(raw.view(-1, gates, H), (H,), None, None, EPS)
    return y.flatten(1), mean, rstd


def norm_grad(d: Tensor, raw: Tensor, mean: Tensor, rstd: Tensor,
              weight: Tensor | None = None) -> Tensor:
    """Gradient of raw (b, G*H) through the per-gate layer norm (and its gain ``weight`` (H,),
    when one gain serves all rows), from the output's gradient d."""
    shape = (raw.size(0), mean.size(1), -1)
    return torch.ops.aten.native_layer_norm_backward(
        d.reshape(shape), raw.view(shape), (raw.size(1) // mean.size(1),), mean, rstd, weight,
        None, [True, False, False])[0].flatten(1)


def zoneout_grad(d: Tensor, keep: Tensor | float | None) -> tuple[Tensor, Tensor | None]:
    """Split the gradient d of lerp(new, old, keep) into those of new and old."""
    if keep is None:
        return d, None
    to_old = d * keep
    return d - to_old, to_old


def recurrent(base: Tensor | None, h: Tensor, w: StepMatmul, gain: Tensor | None, gates: int,
              raw: Tensor | None, out: Tensor) -> Tensor:
    """The recurrent half of a step added to ``base`` (the input half or a bias; or None):
    base + W_hh h, or with layer norm base + LN(W_hh h) ⋆ gain, ``raw`` keeping W_hh h."""
    if gain is None:
        return w(h, out, base)
    normed = norm(w(h, raw), gates)
    if base is None:
        return torch.mul(normed, gain, out=out)
    return torch.addcmul(base, normed, gain, out=out)


def recurrent_grad(d: Tensor, w_t: StepMatmul, gain: Tensor | None, stats: tuple | None,
                   raw: Tensor | None, d_raw: Tensor, out: Tensor | None = None) -> Tensor:
    """The inverse of ``recurrent``: from d (b, G*H) of its output, the gradient of h into
    ``out`` (a fresh tensor if None), ``w_t`` multiplying by W_hh's transpose; ``d_raw`` gets
    that of W_hh h (it is d itself without layer norm). ``stats``: this step's mean and rstd
    from ``norm_stats``."""
    if gain is not None:
        d = d_raw.copy_(norm_grad(d * gain, raw, *stats))
    return w_t(d, out)


def recurrent_weight_grads(need: tuple[bool, bool], d_raw: Tensor, d: Tensor, h: Tensor,
                           normed: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """After the loop, in one op each: the gradients of the recurrent weight (from d_raw and
    the h (N, *) each row's matmul saw) and of the layer norm gain (from d and the normalised
    rows), where ``need``-ed."""
    d_weight = mm(d_raw.t(), h) if need[0] else None
    d_gain = column_sums(d, normed)[0] if normed is not None and need[1] else None
    return d_weight, d_gain


class _GateNorm(torch.autograd.Function):
    """``cells.gate_norm`` over packed rows (N, G*H) in C++: one pass a row each way, the
    gradients of gain and bias summed in the same pass (torch's ops take six passes)."""

    @staticmethod
    def forward(ctx, y: Tensor, gain: Tensor, bias: Tensor | None, gates: int) -> Tensor:
        out = torch.empty_like(y)
        mean, rstd = y.new_empty(y.size(0), gates), y.new_empty(y.size(0), gates)
        native.module().gate_norm_forward(y, gain, bias, out, mean, rstd)
        ctx.save_for_backward(y, gain, mean, rstd)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, d: Tensor):
        y, gain, mean, rstd = ctx.saved_tensors
        dx = torch.empty_like(y)
        d_gain, d_bias = native.module().gate_norm_backward(d.contiguous(), y, gain, mean, rstd,
                                                             dx)
        return dx, d_gain, d_bias if ctx.has_bias else None, None


def gate_norm(y: Tensor, gain: Tensor, bias: Tensor | None, gates: int) -> Tensor:
    """``cells.gate_norm`` of a fresh input half y (N, G*H), in C++ where ``native.usable``;
    where no gradient is recorded, in place in y (one buffer of the sequence fewer: a second
    one is what makes the allocator hand the memory back and page-fault it in again)."""
    args = [t for t in (y, gain, bias) if t is not None]
    if y.dim() != 2 or not native.usable(*args):
        return cells_gate_norm(y, gain, bias, gates)
    if torch.is_grad_enabled() and any(t.requires_grad for t in args):
        return _GateNorm.apply(y.contiguous(), gain, bias, gates)
    stats = y.new_empty(2, y.size(0), gates)
    native.module().gate_norm_forward(y, gain, bias, y, *stats)
    return y


def column_sums(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """(a ⋆ b).sum(0) and a.sum(0) of (N, W) tensors: in one pass in C++ where
    ``native.usable``."""
    if native.usable(a, b) and a.stride(1) == 1 and b.stride(1) == 1:
        return tuple(native.module().column_sums(a, b))
    return (a * b).sum(0), a.sum(0)


def folded_bias(cell) -> Tensor | None:
    """b_ih + b_hh: both add to every step's gates."""
    return None if cell.bias_ih is None else cell.bias_ih + cell.bias_hh


def input_args(cell, x: Tensor):
    """The first three arguments of the LSTM's and the RNN's function for ``cell``: x, weight_ih
    and both biases summed, for the function to project; with layer norm the input half as the
    cell computes it (``gate_norm`` above), plus b_hh (it adds up too), None, None."""
    if cell.layer_norm:
        return cell.project(x, fold_hh=True, norm=gate_norm), None, None
    return x, cell.weight_ih, folded_bias(cell)


def input_half(x: Tensor, weight_ih: Tensor | None, bias: Tensor | None,
               rows: int | None = None) -> Tensor:
    """The buffer (N, G*H) the steps add their recurrent half to: x @ weight_ih.T + bias, made
    here when ``weight_ih`` is given (the plain input half, biases folded: the steps then add
    in place), else a fresh buffer of ``rows`` rows (default N) for x = the input half computed
    outside (layer norm)."""
    if weight_ih is None:
        return x.new_empty(rows or x.size(0), x.size(1))
    return mm(x, weight_ih.t(), bias)


def input_half_grads(need: tuple[bool, ...], x: Tensor, weight_ih: Tensor | None, d: Tensor,
                     d_bias: Tensor | None = None) -> tuple[Tensor | None, ...]:
    """The inverse of ``input_half`` from d (N, G*H), the gradient of its result: those of x,
    weight_ih and bias where ``need``-ed (ctx.needs_input_grad[:3]), the bias's given as
    ``d_bias`` where the caller summed it already; without weight_ih, d is x's."""
    if weight_ih is None:
        return d, None, None
    if d_bias is None and need[2]:
        d_bias = d.sum(0)
    return mm(d, weight_ih) if need[0] else None, mm(d.t(), x) if need[1] else None, d_bias
