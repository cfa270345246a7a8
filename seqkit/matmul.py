"""Matrix products on oneDNN for float32 tensors on CPU.

torch computes float32 products on CPU with MKL's sgemm. On the AMD EPYC CPUs (AVX-512) this
project measures on, MKL takes a 256-bit path and reaches about 92 GFLOP/s on one core, where
oneDNN, which torch also ships, reaches about 220 (n = 2048: 95 against 223; the translation
model's output layer, 900 x 256 -> 8,000: 89 against 224), with the same float32 arithmetic.
seqkit's layers take oneDNN's linear primitive for their products here:

- ``mm`` for one product inside an autograd function (the kernels' input halves and weight
  gradients, the input-fed decoder's);
- ``StepMatmul`` for the same weight at every step of a loop, reordered once into oneDNN's
  blocked layout;
- ``linear`` and ``Linear``, an ``nn.Linear`` whose forward and backward products run on it
  (the cells' input halves, the models' layers).

Other dtypes and devices, tracing, export and ``torch.compile`` keep torch's own products, as
does a torch without oneDNN (``onednn()``) or with it switched off
(``torch.backends.mkldnn.enabled = False``).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

PACK_MIN_STEPS = 8  # shorter loops skip the reorder (it costs about two steps' products)


@functools.cache
def onednn() -> bool:
    """Whether this torch has oneDNN's linear primitive and its weight reorder (the ops that
    inductor's CPU freezing uses)."""
    try:
        w = torch.ops.mkldnn._reorder_linear_weight(torch.eye(2), batch_size=1)
        y = torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), w, None, "none", [], "")
    except (AttributeError, NotImplementedError, RuntimeError):
        return False
    return y.tolist() == [[1.0, 1.0]]


def usable(*tensors: Tensor) -> bool:
    """Whether products of these tensors go to oneDNN: float32 on CPU, eager (checked first,
    so that ``torch.compile`` and tracing never see oneDNN's ops), oneDNN on."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    return (all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)
            and torch.backends.mkldnn.enabled and onednn())


def _dense(t: Tensor) -> Tensor:
    """t itself if its rows or columns are contiguous, else a contiguous copy: oneDNN reads
    the weight operand with its strides, which must not overlap or skip."""
    return t if t.is_contiguous() or t.t().is_contiguous() else t.contiguous()


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x (M, K) @ weight.T (weight (N, K) or reordered) + bias, on oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def transposed(t: Tensor) -> Tensor:
    """t.T (t 2-D) as a contiguous tensor: on CPU (float32, float64, rows of unit stride) by
    seqkit's C++ transpose in 16 x 16 tiles, elsewhere torch's copy."""
    from .kernels import native  # (the kernels import this module)

    if t.stride(1) == 1 and native.usable(t):
        out = t.new_empty(t.size(1), t.size(0))
        native.module().transpose_into(t, out)
        return out
    return t.t().contiguous()


def mm(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """a @ b (+ bias, a row), on oneDNN where ``usable``; an a of another dtype than b is cast
    to it and the product back (bfloat16 products under mixed precision). Not differentiable:
    for autograd functions' own forward and backward."""
    if a.dtype != b.dtype:
        return mm(a.to(b.dtype), b, bias).to(a.dtype)
    if usable(a, b):
        if bias is None and not a.is_contiguous() and (b.t().is_contiguous()
                                                       or b.numel() < a.numel()):
            # a is a transposed view (a weight gradient's d.T): oneDNN would copy it into rows;
            # (b.T @ a.T).T copies the smaller b instead, or nothing if b.T is rows already,
            # and the result, which autograd would copy into a parameter's layout
            return transposed(_linear(b.t() if b.t().is_contiguous() else transposed(b),
                                      _dense(a)))
        return _linear(a, _dense(b.t()), bias)
    return torch.mm(a, b) if bias is None else torch.addmm(bias, a, b)


class StepMatmul:
    """``x @ weight.T`` at every step of a loop, the weight (out, in) the same at each.

    On oneDNN, for loops of ``PACK_MIN_STEPS`` or more, the weight is reordered once into
    oneDNN's blocked layout (what oneDNN's own fused LSTM runs on); at the kernels' sizes
    (32 rows, 256 -> 1024) a step's product then takes half of torch.mm's time. Elsewhere
    torch.mm on a contiguous transposed copy. Not differentiable, as ``mm``.
    """

    def __init__(self, weight: Tensor, batch_sizes: list[int]):
        self.weight = self.weight_t = None
        if not usable(weight):
            self.weight_t = weight.t().contiguous()
        elif len(batch_sizes) >= PACK_MIN_STEPS:
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight,
                                                                   batch_size=batch_sizes[0])
        else:
            self.weight = _dense(weight)

    @property
    def on_onednn(self) -> bool:
        return self.weight is not None

    @property
    def reordered(self) -> bool:
        return self.weight is not None and self.weight.is_mkldnn

    def __call__(self, x: Tensor, out: Tensor | None = None,
                 base: Tensor | None = None) -> Tensor:
        """base + x @ weight.T into ``out`` (a fresh tensor if None); ``base``, which may be
        ``out`` itself or a row to broadcast, is left out if None. An x of another dtype than
        the weight is cast to it, and the product back (bfloat16 products of float32 states
        under mixed precision; a float32 weight on oneDNN takes float32 x only)."""
        if self.weight is not None:
            y = _linear(x, self.weight)
        elif x.dtype != self.weight_t.dtype:
            y = mm(x, self.weight_t)  # its cast
        elif base is None:
            return x.mm(self.weight_t) if out is None else torch.mm(x, self.weight_t, out=out)
        else:
            return torch.addmm(base, x, self.weight_t, out=out)
        if base is not None:
            return torch.add(base, y, out=out)
        return y if out is None else out.copy_(y)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, d: Tensor):
        x, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        d_x = _linear(d, _dense(weight.t())) if need[0] else None
        d_weight = mm(d.t(), x) if need[1] else None  # copying the smaller of d, x
        d_bias = d.sum(0) if ctx.has_bias and need[2] else None
        return d_x, d_weight, d_bias


MIN_PRODUCT = 2 ** 20  # multiply-adds under which F.linear's lower call overhead wins
MIN_SIDE = 16  # inputs or outputs under which too: oneDNN's kernels for thin products unmeasured


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear``, its forward and backward products on oneDNN where ``usable``, the product
    is large enough and no autocast is on (which gives torch's bfloat16 products)."""
    if (not usable(x, weight) or torch.is_autocast_enabled("cpu") or x.dim() < 2
            or min(weight.shape) < MIN_SIDE or x.numel() * weight.size(0) < MIN_PRODUCT):
        return F.linear(x, weight, bias)
    rows = x.reshape(-1, x.size(-1)).contiguous()
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in (x, weight, bias)):
        y = _Linear.apply(rows, weight, bias)
    else:
        y = _linear(rows, weight, bias)
    return y.view(*x.shape[:-1], -1)


class Linear(nn.Linear):
    """``nn.Linear`` (the same parameters and state dict) on ``linear``."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
