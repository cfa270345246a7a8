"""The fused twin: torch's own kernels (cuDNN on GPU, oneDNN or C++ loops on CPU).

The kernels take a flat list of weights in torch's order per layer and direction: w_ih, w_hh,
b_ih, b_hh (when bias), w_hr (when proj_size). seqkit layers hold the same parameters, so the
fused and the custom backend run the very same weights.
"""
from __future__ import annotations

import torch
from torch import Tensor, _VF

_KERNELS = {"LSTM": _VF.lstm, "GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu}


def _mode(cell) -> str:
    """torch's name for the kernel of this cell type."""
    name = type(cell).__name__.removesuffix("Cell")
    return f"RNN_{cell.nonlinearity.upper()}" if name == "RNN" else name


def fused_run(layer, x: Tensor, batch_sizes: Tensor | None, hx: tuple[Tensor, ...]):
    """Run the whole stack with torch's kernel; x is padded (batch_sizes None) or packed."""
    kernel = _KERNELS[_mode(layer.cells[0])]
    weights = layer.flat_weights()
    state = hx if len(hx) == 2 else hx[0]
    args = (layer.bias, layer.num_layers, layer.dropout, layer.training, layer.bidirectional)
    if batch_sizes is None:
        out = kernel(x, state, weights, *args, layer.batch_first)
    else:
        out = kernel(x, batch_sizes, state, weights, *args)
    return out[0], tuple(out[1:])


def flatten_parameters(layer) -> None:
    """On CUDA, move the weights into the one contiguous buffer cuDNN wants (as torch does)."""
    weights = layer.flat_weights()
    first = weights[0]
    if not (first.is_cuda and torch.backends.cudnn.is_acceptable(first)):
        return
    if any(w.dtype != first.dtype or not w.is_cuda for w in weights):
        return
    if len({w.data_ptr() for w in weights}) != len(weights):
        return
    from torch.backends.cudnn.rnn import get_cudnn_mode

    mode = get_cudnn_mode(_mode(layer.cells[0]))
    per_cell = (4 if layer.bias else 2) + (1 if layer.proj_size else 0)
    with torch.cuda.device_of(first), torch.no_grad():
        if torch._use_cudnn_rnn_flatten_weight():
            torch._cudnn_rnn_flatten_weight(weights, per_cell, layer.input_size, mode,
                                            layer.hidden_size, layer.proj_size,
                                            layer.num_layers, layer.batch_first,
                                            layer.bidirectional)
