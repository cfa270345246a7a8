"""The fused twin: torch's own kernels (cuDNN on GPU, oneDNN or C++ loops on CPU).

The kernels take a flat list of weights in torch's order per layer and direction: w_ih, w_hh,
b_ih, b_hh (when bias), w_hr (when proj_size). seqkit layers hold the same parameters, so the
fused and the custom backend run the very same weights.
"""
from __future__ import annotations

import torch
from torch import Tensor, _VF

from .dropout import dropout

_KERNELS = {"LSTM": _VF.lstm, "GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu}
_CELL_KERNELS = {"LSTM": _VF.lstm_cell, "GRU": _VF.gru_cell, "RNN_TANH": _VF.rnn_tanh_cell,
                 "RNN_RELU": _VF.rnn_relu_cell}


def _mode(cell) -> str:
    """torch's name for the kernel of this cell type."""
    name = type(cell).__name__.removesuffix("Cell")
    return f"RNN_{cell.nonlinearity.upper()}" if name == "RNN" else name


@torch.compiler.disable  # eager, as torch.nn.LSTM under dynamo (inductor breaks mkldnn_rnn_layer)
def fused_run(layer, x: Tensor, batch_sizes: Tensor | None, hx: tuple[Tensor, ...]):
    """Run the whole stack with torch's kernel; x is padded (batch_sizes None) or packed."""
    steps = x.size(1 if layer.batch_first else 0) if x.dim() == 3 else 0
    if batch_sizes is None and steps == 1 and not x.is_cuda and not layer.proj_size:
        return _one_step(layer, x, hx)
    kernel = _KERNELS[_mode(layer.cells[0])]
    weights = layer.flat_weights()
    state = hx if len(hx) == 2 else hx[0]
    args = (layer.bias, layer.num_layers, layer.dropout, layer.training, layer.bidirectional)
    if batch_sizes is None:
        out = kernel(x, state, weights, *args, layer.batch_first)
    else:
        out = kernel(x, batch_sizes, state, weights, *args)
    return out[0], tuple(out[1:])


def _one_step(layer, x: Tensor, hx: tuple[Tensor, ...]):
    """A single time step (a decoder's) through torch's cell kernels, layer by layer: on CPU
    the sequence kernel (oneDNN) called on one step costs about twice as much, forward and
    backward (B 64, I 512, H 256 LSTM: 6.4 ms against 3.1 ms)."""
    cell = _CELL_KERNELS[_mode(layer.cells[0])]
    weights = layer.flat_weights()
    per_cell = len(weights) // len(layer.cells)
    D = 2 if layer.bidirectional else 1
    inputs = x[:, 0] if layer.batch_first else x[0]  # (B, I)
    finals = []
    for k in range(layer.num_layers):
        outs = []
        for d in range(D):
            j = k * D + d
            w = weights[j * per_cell:(j + 1) * per_cell] + [None, None][:4 - per_cell]
            new = cell(inputs, tuple(h[j] for h in hx) if len(hx) == 2 else hx[0][j], *w)
            new = new if isinstance(new, tuple) else (new,)
            outs.append(new[0])
            finals.append(new)
        inputs = torch.cat(outs, -1) if D == 2 else outs[0]
        if layer.dropout and layer.training and k < layer.num_layers - 1:
            inputs = dropout(inputs, layer.dropout)
    out = inputs.unsqueeze(1 if layer.batch_first else 0)
    return out, tuple(torch.stack(s) for s in zip(*finals))


def flatten_parameters(layer) -> None:
    """On CUDA, move the weights into the one contiguous buffer cuDNN wants (as torch does)."""
    if set(layer.options) - {"recurrent_dropout"}:  # cells cuDNN cannot run (coupled gates, say,
        return  # have weights of other shapes): nothing to flatten for it
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
