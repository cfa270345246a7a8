"""CUDA graphs for the kernel path: a layer's training call replayed in one launch each way.

On CUDA the kernels (``seqkit.kernels``) run their time loops as torch ops, a dozen kernel
launches a step forward and more backward, each queued from Python: at C1's sizes the GPU
waits on the launches, and the custom LSTM trained at 4.6-11.2x cuDNN's time on an H200. The
same call captured by ``torch.cuda.make_graphed_callables`` (the forward one graph, the
backward another, each replayed in a single launch) ran at 1.10-1.65x there, ad hoc
(docs/runs/cuda_graphs_h200_2dc2040.md).

A layer whose ``cuda_graphs`` is on (off by default: not yet run on a GPU; also on for every
layer with ``SEQKIT_CUDA_GRAPHS=1``) captures a call here when

- it runs the kernels on CUDA on a padded batch (a PackedSequence's batch sizes, and
  ``lengths=``, change the work from call to call), in training, gradients on, no autocast;
- its signature (the shapes, dtypes, devices and gradient needs of the input and states, the
  parameters' storage, the layer's dropout and its cells' options) has come ``AFTER`` times: a
  capture costs a few eager calls, which pays for shapes that repeat (fixed windows, a
  benchmark), not for batches padded to each one's longest;
- the layer holds fewer than ``MOST`` graphs, each with its own memory for a call's activations
  (freed with the layer, or when its parameters move).

A replay writes the graphs' own buffers: the caller gets copies of the outputs, and the
gradients of the input, states and parameters leave as copies (``_Fresh``); the previous
call's activations are overwritten too, so a call whose signature's graph has run forward and
not yet backward (a layer applied twice in one step) runs eagerly, as does every other call,
and any whose capture failed (logged once). (A second backward through a call with
``retain_graph=True`` after a later call of the same signature would read that call's
activations: run such layers with ``cuda_graphs`` off.)
Zoneout's and dropout's draws come from the CUDA generator inside the graphs: fresh at each
replay.
"""
from __future__ import annotations

import collections
import functools
import logging
import os
import weakref
from typing import Callable

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)
AFTER = 3  # calls of one signature before it is captured
MOST = 4  # graphs a layer keeps
SEEN = 256  # signatures a layer counts at most


def enabled_by_default() -> bool:
    return os.environ.get("SEQKIT_CUDA_GRAPHS", "0") == "1"


class _Call(nn.Module):
    """``run(layer, x, None, hx, False)`` (the layer's kernel path, not its forward, which
    would come back here) as a module, for torch.func.functional_call."""

    def __init__(self, layer: nn.Module, run: Callable) -> None:
        super().__init__()
        self.layer, self.run = layer, run

    def forward(self, x: Tensor, *hx: Tensor):
        return self.run(self.layer, x, None, hx, False)


class _Fresh(torch.autograd.Function):
    """Its inputs, as views; backward hands on clones of their gradients: the graphed call's
    gradients are its own buffers, which the next replay overwrites (a parameter's .grad
    would otherwise be that buffer, and accumulating into it would double the next one)."""

    @staticmethod
    def forward(ctx, *tensors: Tensor) -> tuple[Tensor, ...]:
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> tuple[Tensor | None, ...]:
        return tuple(None if g is None else g.clone() for g in grads)


class Captures:
    """One layer's captured calls, by signature. ``capture`` makes a graphed callable of a
    function and its sample arguments (torch.cuda.make_graphed_callables; tests give a
    stand-in); the function takes the input, the states and the layer's parameters, all as
    arguments, so that each one's gradient passes through ``_Fresh``."""

    def __init__(self, capture: Callable | None = None, device_type: str = "cuda") -> None:
        self.capture = capture or functools.partial(torch.cuda.make_graphed_callables,
                                                    allow_unused_input=True)
        self.device_type = device_type
        self.seen: collections.Counter = collections.Counter()
        self.graphs: dict[tuple, Callable] = {}
        self.pending: dict[tuple, object] = {}  # signature -> the call whose backward is due
        self.failed: set[tuple] = set()

    def signature(self, layer: nn.Module, x: Tensor, hx: tuple[Tensor, ...]) -> tuple | None:
        """The key of a call that may be captured, or None. The cells' options (rates
        included) and the layer's dropout are part of the captured work: change them and
        the key changes too."""
        if (x.device.type != self.device_type or not layer.training
                or not torch.is_grad_enabled()
                or torch.is_autocast_enabled(self.device_type)
                or torch.compiler.is_compiling()
                or self.device_type == "cuda" and torch.cuda.is_current_stream_capturing()):
            return None
        return (tuple(x.shape), x.dtype, str(x.device), x.requires_grad,
                tuple((tuple(h.shape), h.dtype, str(h.device), h.requires_grad) for h in hx),
                tuple((p.data_ptr(), p.requires_grad) for p in layer.parameters()),
                layer.dropout, tuple(tuple(sorted(c.options.items())) for c in layer.cells))

    def __call__(self, layer: nn.Module, x: Tensor, hx: tuple[Tensor, ...], run: Callable):
        """``run(layer, x, None, hx, False)``, replayed from a graph where one is captured."""
        key = self.signature(layer, x, hx)
        graphed = (None if key is None or key in self.failed or key in self.pending
                   else self._graph(key, layer, x, hx, run))
        if graphed is None:
            return run(layer, x, None, hx, False)
        out, state = graphed(*_Fresh.apply(x, *hx, *layer.parameters()))
        self._hold_until_backward(key, out)
        # the graph's output buffers are the next replay's: the caller gets its own
        return out.clone(), tuple(s.clone() for s in state)

    def _graph(self, key: tuple, layer: nn.Module, x: Tensor, hx: tuple[Tensor, ...],
               run: Callable) -> Callable | None:
        """This signature's graphed call, captured now if this call is its AFTER-th and the
        layer holds fewer than MOST; else None."""
        if key in self.graphs:
            return self.graphs[key]
        if len(self.seen) >= SEEN:  # shapes that keep changing: start counting afresh
            self.seen.clear()
        self.seen[key] += 1
        if self.seen[key] < AFTER or len(self.graphs) >= MOST:
            return None
        return self._capture(key, layer, x, hx, run)

    def _capture(self, key: tuple, layer: nn.Module, x: Tensor, hx: tuple[Tensor, ...],
                 run: Callable) -> Callable | None:
        module = _Call(layer, run)
        names = [f"layer.{name}" for name, _ in layer.named_parameters()]

        def call(x: Tensor, *rest: Tensor):  # the kernel path on these parameters
            hx, params = rest[:len(rest) - len(names)], rest[len(rest) - len(names):]
            return torch.func.functional_call(module, dict(zip(names, params)), (x, *hx))

        samples = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in (x, *hx))
        try:
            graphed = self.capture(call, (*samples, *layer.parameters()))
        except Exception as e:  # a capture that fails leaves this signature eager
            self.failed.add(key)
            log.warning("%s: capturing its call in a CUDA graph failed, so calls of shape %s "
                        "run eagerly: %s", type(layer).__name__, tuple(x.shape),
                        str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            return None
        self.graphs[key] = graphed
        log.info("%s: a call of shape %s captured in CUDA graphs (%d held)",
                 type(layer).__name__, tuple(x.shape), len(self.graphs))
        return graphed

    def _hold_until_backward(self, key: tuple, out: Tensor) -> None:
        """Calls of this signature run eagerly until this one's backward starts, or its autograd
        graph is dropped without one (the graphs' buffers hold this call's activations)."""
        node = out.grad_fn
        if node is None:  # nothing will run backward: the buffers are free again
            return
        token = object()
        self.pending[key] = token

        def release() -> None:  # only this call's own hold: a later call may hold it now
            if self.pending.get(key) is token:
                del self.pending[key]

        node.register_prehook(lambda grads: release())
        weakref.finalize(node, release)  # (the graphed call's node: an autograd.Function's)
