"""Multi-layer, bidirectional recurrent layers with torch.nn's interface and two backends.

A layer stacks cells: ``cells[k * D + d]`` runs layer k in direction d (D = 2 when
bidirectional). Internally every batch is packed (time-major, sorted by length), so variable
lengths need no masks: step t simply runs on the batch_sizes[t] sequences still going.
"""
from __future__ import annotations

import functools
import logging
import re
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells import GRUCell, LSTMCell, RNNCell
from ..kernels import has_kernel
from ..kernels import sequence as kernel_sequence
from .captured import Captures, enabled_by_default
from .cudnn import flatten_parameters, fused_run
from .dropout import dropout

log = logging.getLogger(__name__)
BACKENDS = ("custom", "cudnn", "auto")
_TORCH_KEY = re.compile(r"^(\w+)_l(\d+)(_reverse)?$")  # weight_ih_l0_reverse


def length_mask(lengths: Tensor, max_len: int, device=None) -> Tensor:
    """(B, max_len) bool mask of a padded batch: True at the first lengths[b] steps of row b."""
    device = device or lengths.device
    return torch.arange(max_len, device=device) < lengths.to(device)[:, None]


class Recurrent(nn.Module):
    """A stack of cells made by ``cell(input_size, hidden_size, bias)``: the body of RNN, GRU
    and LSTM, and the layer for a cell class of your own (a ``seqkit.cells.RecurrentCell``
    subclass), which runs on its step loop.

    ``cuda_graphs``: whether training calls on the kernels on CUDA are captured in CUDA graphs
    once their shape repeats (``captured``; off unless ``SEQKIT_CUDA_GRAPHS=1``)."""

    cuda_graphs: bool = enabled_by_default()

    def __init__(self, cell: Callable[[int, int, bool], nn.Module], input_size: int,
                 hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, backend: str = "auto") -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        D = 2 if bidirectional else 1
        out_size = proj_size or hidden_size
        self.cells = nn.ModuleList(cell(input_size if k == 0 else out_size * D, hidden_size, bias)
                                   for k in range(num_layers) for _ in range(D))
        self.backend = backend
        self.register_state_dict_post_hook(_to_torch_keys)
        self.register_load_state_dict_pre_hook(_from_torch_keys)
        self.register_load_state_dict_post_hook(_report_torch_keys)

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, backend: str) -> None:
        """Which kernels run the layer (see BACKENDS and ``path``); settable on a built layer:
        the weights are the same for every backend."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "cudnn" and not has_kernel(self.cells[0]):
            raise ValueError(f"backend='cudnn': torch's fused kernels run seqkit's own cells, "
                             f"not {type(self.cells[0]).__name__}; use backend='custom' or "
                             f"'auto'")
        if backend == "cudnn" and self.options:
            raise ValueError(f"backend='cudnn': torch's fused kernels have no "
                             f"{', '.join(f'{k}={v!r}' for k, v in self.options.items())}; "
                             f"use backend='custom' or 'auto'")
        self._backend = backend

    @property
    def options(self) -> dict[str, object]:
        """The cell options set that torch's fused kernels lack (``RecurrentCell.options``)."""
        return self.cells[0].options

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """Each state's features: (H_out,), or (H_out, H) for an LSTM's h and c."""
        return self.cells[0].state_sizes()

    @property
    def output_size(self) -> int:
        """Features of each output step: (proj_size or hidden_size) per direction."""
        return (self.proj_size or self.hidden_size) * (2 if self.bidirectional else 1)

    def to_backend(self, backend: str) -> Recurrent:
        """Switch this layer to ``backend`` in place (same weights); returns the layer."""
        self.backend = backend
        return self

    # -- torch.nn compatibility ------------------------------------------------------------
    def _weight_names(self) -> list[str]:
        return (["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.bias else [])
                + (["weight_hr"] if self.proj_size else []))

    def flat_weights(self) -> list[Tensor]:
        """Weights in the order of torch's fused kernels: per layer and direction."""
        return [getattr(c, n) for c in self.cells for n in self._weight_names()]

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """torch.nn's ``all_weights``: per layer and direction, its weights in torch's order."""
        return [[getattr(c, n) for n in self._weight_names()] for c in self.cells]

    def flatten_parameters(self) -> None:
        flatten_parameters(self)

    def _apply(self, fn, recurse=True):
        result = super()._apply(fn, recurse)
        self.flatten_parameters()
        self.__dict__.pop("_captures", None)  # graphs of the parameters' old storage
        return result

    def __getstate__(self):  # copies and pickles leave the CUDA graphs behind
        state = super().__getstate__()
        state.pop("_captures", None)
        return state

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            match = _TORCH_KEY.match(name)
            if match is None:
                raise
            param, k, rev = match.groups()
            cells = super().__getattr__("cells")
            D = 2 if self.bidirectional else 1
            return getattr(cells[int(k) * D + bool(rev)], param)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("proj_size", 0)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s + f", backend={self.backend!r}"

    # -- forward ---------------------------------------------------------------------------
    def forward(self, input: Tensor | PackedSequence, hx=None, lengths: Tensor | None = None):
        """input: (T, B, I) / (B, T, I) when batch_first / (T, I) unbatched, or a PackedSequence.

        With ``lengths`` (B,) for a padded batch, outputs past each sequence's end are zero and
        the final states are taken at its true end, in both directions. Returns what torch.nn
        returns: ``output, h_n`` (``output, (h_n, c_n)`` for LSTM), h_n of (L * D, B, H_out).
        """
        if lengths is not None:
            if isinstance(input, PackedSequence):
                raise ValueError("lengths= is for padded input; a PackedSequence has its own")
            total = input.size(1 if self.batch_first else 0)
            lengths = torch.as_tensor(lengths).cpu()
            self._check_lengths(lengths, input.size(0 if self.batch_first else 1), total)
            packed = pack_padded_sequence(input, lengths, self.batch_first, enforce_sorted=False)
            out, state = self(packed, hx)
            return pad_packed_sequence(out, self.batch_first, total_length=total)[0], state
        packed = isinstance(input, PackedSequence)
        if packed:
            x, batch_sizes, sorted_idx, unsorted_idx = input
            batch, unbatched = int(batch_sizes[0]), False
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"{type(self).__name__}: expected input of 2 or 3 dims, got "
                                 f"shape {tuple(input.shape)}")
            batch_sizes = sorted_idx = unsorted_idx = None
            unbatched = input.dim() == 2
            batch_dim = 0 if self.batch_first else 1
            x = input.unsqueeze(batch_dim) if unbatched else input
            batch = x.size(batch_dim)
        if x.size(-1) != self.input_size:
            raise ValueError(f"{type(self).__name__}: input has {x.size(-1)} features, expected "
                             f"input_size={self.input_size}")
        hx = self._initial_state(hx, batch, x, unbatched, sorted_idx)
        path = self.path(x, batch_sizes)
        if path == "fused":
            out, state = fused_run(self, x, batch_sizes, hx)
        elif path == "kernel" and batch_sizes is None and self.cuda_graphs:
            if "_captures" not in self.__dict__:
                self.__dict__["_captures"] = Captures()
            out, state = self.__dict__["_captures"](self, x, hx, _custom_run)
        else:
            out, state = _custom_run(self, x, batch_sizes, hx, path == "loop")
        if packed:
            out = PackedSequence(out, batch_sizes, sorted_idx, unsorted_idx)
            if unsorted_idx is not None:
                state = tuple(s.index_select(1, unsorted_idx) for s in state)
        elif unbatched:
            out, state = out.squeeze(batch_dim), tuple(s.squeeze(1) for s in state)
        return out, (state if len(state) == 2 else state[0])

    def _check_lengths(self, lengths: Tensor, batch: int, total: int) -> None:
        name = type(self).__name__
        if lengths.dim() != 1 or len(lengths) != batch:
            raise ValueError(f"{name}: lengths must hold one length per sequence ({batch}), "
                             f"got shape {tuple(lengths.shape)}")
        if len(lengths) and (lengths.max() > total or lengths.min() < 1):
            bad = int(lengths.max()) if lengths.max() > total else int(lengths.min())
            raise ValueError(f"{name}: lengths must be in [1, {total}] (the input's steps), "
                             f"got {bad}")

    def path(self, x: Tensor, batch_sizes: Tensor | None) -> str:
        """Which code runs a call on input x: "fused" (torch's kernels, ``cudnn.fused_run``),
        "kernel" (``seqkit.kernels``: the cells' equations over the whole sequence, every
        option) or "loop" (the cells' own step loop: a cell class without a kernel).

        backend="auto" takes the fused kernels when they compute the same function: no cell
        options (or only recurrent dropout, outside training), except for training on
        variable-length (packed) batches on CPU, where torch's backward zero-fills an
        (N, G*H) gradient per step, O(T²), and seqkit's kernels are faster (see README).
        """
        options = set(self.options) - ({"recurrent_dropout"} if not self.training else set())
        if not has_kernel(self.cells[0]):  # a cell class of one's own
            path = "loop"
        elif self.backend == "cudnn" or self.backend == "auto" and not options and (
                batch_sizes is None or x.is_cuda or not torch.is_grad_enabled()):
            path = "fused"
        else:
            path = "kernel"
        _log_once(type(self).__name__, type(self.cells[0]).__name__, self.backend, path,
                  tuple(options))
        return path

    def _initial_state(self, hx, batch: int, x: Tensor, unbatched: bool,
                       sorted_idx: Tensor | None) -> tuple[Tensor, ...]:
        """hx as torch takes it -> a tuple of (L * D, B, *) tensors in the packed batch order."""
        LD = self.num_layers * (2 if self.bidirectional else 1)
        sizes = self.state_sizes
        if hx is None:
            return tuple(x.new_zeros(LD, batch, n) for n in sizes)
        hx = tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)
        if len(hx) != len(sizes):
            raise ValueError(f"{type(self).__name__}: hx must hold {len(sizes)} tensor(s), "
                             f"got {len(hx)}")
        if unbatched:
            hx = tuple(h.unsqueeze(1) for h in hx)
        for h, n in zip(hx, sizes):
            if tuple(h.shape) != (LD, batch, n):
                raise ValueError(f"{type(self).__name__}: expected hidden state of shape "
                                 f"{(LD, batch, n)}, got {tuple(h.shape)}")
        if sorted_idx is not None:
            hx = tuple(h.index_select(1, sorted_idx) for h in hx)
        return hx


_LOGGED: set[tuple] = set()  # the kinds of call already logged


@torch.compiler.disable  # logging, not tensor work: eager under torch.compile
def _log_once(layer: str, cell: str, backend: str, path: str, options: tuple[str, ...]) -> None:
    """Say once per kind of call which code runs it, and why when that is the slow loop."""
    key = (layer, cell, backend, path, options)
    if key in _LOGGED:
        return
    _LOGGED.add(key)
    if path == "loop":
        log.warning("%s: %s has no kernel in seqkit.kernels (a subclass may change its step), "
                    "so its step runs in a Python loop, 3-5x slower than the kernels on CPU",
                    layer, cell)
    else:
        log.info("%s(backend=%r) runs on the %s path%s", layer, backend, path,
                 f" for {', '.join(options)}" if options else "")


@torch.compiler.disable  # the kernels' Python time loops run eagerly between compiled graphs
def _custom_run(layer: Recurrent, x: Tensor, batch_sizes: Tensor | None, hx, loop: bool,
                records: list[list] | None = None):
    """The stack on seqkit's kernels (or, with ``loop``, the cells' step loops); same inputs
    and outputs as ``fused_run``. ``records``: one list per cell for the step loops' gates."""
    if torch.is_autocast_enabled(x.device.type):  # mixed precision: the recurrence in float32
        with torch.autocast(x.device.type, enabled=False):
            return _custom_run(layer, x.float(), batch_sizes, tuple(h.float() for h in hx), loop,
                               records)
    if batch_sizes is None:  # a full padded batch is a packed one with constant batch size
        xs = x.transpose(0, 1) if layer.batch_first else x  # (T, B, I)
        T, B = xs.shape[:2]
        data, sizes = xs.reshape(T * B, -1), [B] * T
    else:
        data, sizes = x, batch_sizes.tolist()
    D = 2 if layer.bidirectional else 1
    finals = []
    for k in range(layer.num_layers):
        outs = []
        for d in range(D):
            j = k * D + d
            cell, state = layer.cells[j], tuple(h[j] for h in hx)
            if loop:
                record = None if records is None else records[j]
                out, final = cell.sequence(data, sizes, state, d == 1, record)
            else:
                out, final = kernel_sequence(cell, data, sizes, state, d == 1)
            outs.append(out)
            finals.append(final)
        data = torch.cat(outs, 1) if D == 2 else outs[0]  # (N, D * H_out)
        if layer.dropout and layer.training and k < layer.num_layers - 1:
            data = dropout(data, layer.dropout)
    state = tuple(torch.stack(s) for s in zip(*finals))
    if batch_sizes is None:
        data = data.view(T, B, -1)
        data = data.transpose(0, 1) if layer.batch_first else data
    return data, state


def _torch_key(module: Recurrent, prefix: str, j: int, name: str) -> str:
    """torch.nn's name of cell j's parameter ``name``: ``weight_ih_l{k}[_reverse]``."""
    D = 2 if module.bidirectional else 1
    return f"{prefix}{name}_l{j // D}{'_reverse' if j % D else ''}"


def _to_torch_keys(module: Recurrent, state_dict, prefix: str, local_metadata) -> None:
    """state_dict post-hook: ``cells.{k * D + d}.weight_ih`` -> ``weight_ih_l{k}[_reverse]``."""
    for key in [k for k in state_dict if k.startswith(prefix + "cells.")]:
        j, name = key[len(prefix) + 6:].split(".", 1)
        state_dict[_torch_key(module, prefix, int(j), name)] = state_dict.pop(key)


def _from_torch_keys(module: Recurrent, state_dict, prefix: str, *args) -> None:
    """load_state_dict pre-hook, the inverse of ``_to_torch_keys``."""
    module._load_prefix = prefix  # for _report_torch_keys
    D = 2 if module.bidirectional else 1
    for key in [k for k in state_dict if k.startswith(prefix)]:
        match = _TORCH_KEY.match(key[len(prefix):])
        if match:
            name, k, rev = match.groups()
            state_dict[f"{prefix}cells.{int(k) * D + bool(rev)}.{name}"] = state_dict.pop(key)


def _report_torch_keys(module: Recurrent, incompatible) -> None:
    """load_state_dict post-hook: missing and unexpected keys under torch's names, as the
    state_dict has them (``weight_ih_l0_reverse``, not ``cells.1.weight_ih``)."""
    prefix = getattr(module, "_load_prefix", "")
    own = re.compile(re.escape(prefix) + r"cells\.(\d+)\.(\w+)$")
    for keys in (incompatible.missing_keys, incompatible.unexpected_keys):
        for i, key in enumerate(keys):
            match = own.match(key)
            if match:
                keys[i] = _torch_key(module, prefix, int(match.group(1)), match.group(2))


class RNN(Recurrent):
    """Elman RNN stack, ``torch.nn.RNN``'s twin; cell options as in :class:`RNNCell`."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None, *,
                 backend: str = "auto", layer_norm: bool = False,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0) -> None:
        cell = functools.partial(RNNCell, nonlinearity=nonlinearity, device=device, dtype=dtype,
                                 layer_norm=layer_norm, recurrent_dropout=recurrent_dropout,
                                 zoneout=zoneout)
        super().__init__(cell, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, backend)
        self.nonlinearity = nonlinearity


class GRU(Recurrent):
    """GRU stack, ``torch.nn.GRU``'s twin; ``reset_after=False`` is the article's form."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *,
                 backend: str = "auto", reset_after: bool = True, layer_norm: bool = False,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0) -> None:
        cell = functools.partial(GRUCell, device=device, dtype=dtype, reset_after=reset_after,
                                 layer_norm=layer_norm, recurrent_dropout=recurrent_dropout,
                                 zoneout=zoneout)
        super().__init__(cell, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, backend)


class LSTM(Recurrent):
    """LSTM stack, ``torch.nn.LSTM``'s twin; cell options as in :class:`LSTMCell`."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None, *,
                 backend: str = "auto", peephole: bool = False, coupled: bool = False,
                 layer_norm: bool = False, recurrent_dropout: float = 0.0,
                 zoneout: float = 0.0, zoneout_c: float = 0.0) -> None:
        cell = functools.partial(LSTMCell, device=device, dtype=dtype, proj_size=proj_size,
                                 peephole=peephole, coupled=coupled, layer_norm=layer_norm,
                                 recurrent_dropout=recurrent_dropout, zoneout=zoneout,
                                 zoneout_c=zoneout_c)
        super().__init__(cell, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, backend)


@torch.no_grad()
def gate_trace(layer: Recurrent, sequence: Tensor) -> list[dict[str, Tensor]]:
    """The gate activations and states of ``layer`` over one input sequence (T, I).

    One dict per layer and direction (in ``layer.cells`` order: layer-major, forward before
    backward), each value (T, H) in input order. LSTM: ``update`` Γu, ``forget`` Γf, ``output``
    Γo and ``cell`` c<t>; GRU: ``update`` Γu, ``reset`` Γr, ``candidate`` c̃<t>, ``hidden``
    c<t>. A plain loop over the cells' ``step`` (a fused layer's twins: the same weights), in
    eval mode.
    """
    if sequence.dim() != 2 or sequence.size(1) != layer.input_size:
        raise ValueError(f"expected one sequence of shape (T, {layer.input_size}), got "
                         f"{tuple(sequence.shape)}")
    if isinstance(layer, RNN):
        raise ValueError("a simple RNN has no gates to trace")
    was_training, records = layer.training, [[] for _ in layer.cells]
    x = sequence.unsqueeze(0 if layer.batch_first else 1)  # a batch of one
    layer.eval()
    try:
        _custom_run(layer, x, None, layer._initial_state(None, 1, x, False, None), True, records)
    finally:
        layer.train(was_training)
    D = 2 if layer.bidirectional else 1
    return [{name: torch.cat([s[name] for s in (steps[::-1] if j % D else steps)])
             for name in steps[0]} for j, steps in enumerate(records)]  # in input order
