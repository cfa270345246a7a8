"""Fast kernels for seqkit's cells: each cell, with every option, over a whole sequence.

A cell (``seqkit.cells``) is the readable equations of one step; its ``sequence`` loops that
step and is the reference. Here each cell type has one ``torch.autograd.Function`` that runs
the same equations over a whole packed sequence in preallocated buffers, with the backward
through time written out; tests check both against each other to float64 precision.
"""
from __future__ import annotations

from torch import Tensor

from ..cells import GRUCell, LSTMCell, RNNCell
from . import gru, lstm, rnn

KERNELS = {RNNCell: rnn.run, GRUCell: gru.run, LSTMCell: lstm.run}


def has_kernel(cell) -> bool:
    """Whether ``sequence`` runs this cell on a kernel: the exact classes only, as a subclass
    may change ``step``."""
    return type(cell) in KERNELS


def sequence(cell, x: Tensor, batch_sizes: list[int], state: tuple[Tensor, ...],
             reverse: bool = False) -> tuple[Tensor, tuple[Tensor, ...]]:
    """What ``cell.sequence(x, batch_sizes, state, reverse)`` computes, on the cell's kernel,
    with the same random draws (dropout and zoneout masks) for the same seed."""
    mask, keep = cell.noise(state[0].size(0), x.size(0), x)
    return KERNELS[type(cell)](cell, x, batch_sizes, state, reverse, mask, keep)
