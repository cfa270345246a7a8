"""What the hand-written BPTT functions of the plain RNN, GRU and LSTM share.

Each runs a whole packed sequence (time-major rows, ``batch_sizes[t]`` rows at step t, batch
sorted by decreasing length) in one ``torch.autograd.Function``. Autograd over a Python time
loop records a dozen small ops per step and accumulates the recurrent weight gradient with
one small matmul per step; these functions instead write each step into preallocated buffers
with a handful of in-place ops, and the backward walks the steps once and leaves the weight
gradients to a few large matmuls after the loop.

Here live the parts that do not depend on the cell: the step order, the per-step views, the
input projection, how the state of the active rows is carried from step to step (forward) and
how the state gradient shrinks or grows with them (backward), and the weight gradients.
"""
from __future__ import annotations

import torch
from torch import Tensor


def order(batch_sizes: list[int], reverse: bool) -> range:
    """The steps in processing order."""
    return range(len(batch_sizes) - 1, -1, -1) if reverse else range(len(batch_sizes))


def blocks(t: Tensor, batch_sizes: list[int], hidden: int, first: int, last: int):
    """Per-step views of gate blocks first..last-1 of a packed (N, G*H) buffer, made in one call
    (slicing inside the loop costs a dispatcher round trip per view)."""
    return t[:, first * hidden:last * hidden].split(batch_sizes)


def project(x: Tensor, weight: Tensor, bias: Tensor | None, out: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias for every step at once: (N, I) -> (N, rows of weight)."""
    if bias is None:
        return torch.mm(x, weight.t(), out=out)
    return torch.addmm(bias, x, weight.t(), out=out)


def step_weight(weight_hh: Tensor) -> Tensor:
    """The recurrent weight as the per-step matmul wants it, (H, G*H): a contiguous transposed
    copy makes ``h @ w`` ~20% faster per step than the transposed view."""
    return weight_hh.t().contiguous()


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
    prev = _previous_rows(batch_sizes, reverse).to(pairs[0][0].device)
    return [torch.cat(pair).index_select(0, prev) for pair in pairs]


def state_grads(batch_sizes: list[int], *finals: Tensor):
    """The running state gradients (B, S), first those of the final states ``finals``; the
    backward rewrites them, step by step, into those of the initial state. Also views of their
    first b rows, one tuple per batch size b, made once: step t reads and rewrites the rows of
    its active sequences."""
    grads = tuple(g.clone() for g in finals)
    return grads, {b: tuple(g[:b] for g in grads) for b in set(batch_sizes)}


def sigmoid_grad_(d: Tensor, s: Tensor) -> Tensor:
    """d ⋆ σ'(a) in place, from s = σ(a): σ' = s - s²."""
    return d.mul_(torch.addcmul(s, s, s, value=-1))


def tanh_grad(d: Tensor, y: Tensor, out: Tensor | None = None) -> Tensor:
    """d ⋆ tanh'(a) from y = tanh(a): tanh' = 1 - y². ``out`` may be d itself."""
    return torch.addcmul(d, d * y, y, value=-1, out=out)


def input_grads(need: tuple[bool, ...], x: Tensor, weight_ih: Tensor,
                parts: list[Tensor]) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of x (N, I), weight_ih (G*H, I) and bias_ih (G*H,), where needed (``need`` is
    ctx.needs_input_grad[:3]), from the gradient of the input projection given as column blocks
    ``parts`` (N, *) that cover weight_ih's rows in order (a part can be a strided view)."""
    rows = weight_ih.split([p.size(1) for p in parts])
    d_x = None
    if need[0]:
        for p, w in zip(parts, rows):
            d_x = p.mm(w) if d_x is None else d_x.addmm_(p, w)
    d_weight = torch.cat([p.t().mm(x) for p in parts]) if need[1] else None
    d_bias = torch.cat([p.sum(0) for p in parts]) if need[2] else None
    return d_x, d_weight, d_bias
