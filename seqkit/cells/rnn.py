"""Elman RNN cell."""
from __future__ import annotations

import torch

from .base import RecurrentCell, State, zoneout


class RNNCell(RecurrentCell):
    r"""The vanilla recurrent cell, ``torch.nn.RNNCell``'s twin.

    In the article's notation, with g1 = tanh (or ReLU)::

        a<t> = g1(W_ax x<t> + b_ax + W_aa a<t-1> + b_aa)

    torch's names: ``weight_ih`` = W_ax, ``weight_hh`` = W_aa, ``bias_ih`` + ``bias_hh`` = b_a
    (torch keeps two bias vectors; cuDNN needs both). With ``layer_norm`` each matmul is
    normalised before its bias is added; ``recurrent_dropout`` drops a<t-1> before W_aa with one
    mask per sequence; ``zoneout`` keeps a unit's previous value with that probability.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None, *,
                 layer_norm: bool = False, recurrent_dropout: float = 0.0,
                 zoneout: float = 0.0) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, 1, layer_norm=layer_norm,
                         recurrent_dropout=recurrent_dropout, zoneout=zoneout,
                         device=device, dtype=dtype)
        self.nonlinearity = nonlinearity
        self.reset_parameters()

    def step(self, gx, state: State, mask, keep, record=None) -> State:
        (h,) = state  # (B, H)
        pre = gx + self.recurrent(h if mask is None else h * mask)
        new = torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)
        if record is not None:
            record.append({"hidden": new})
        return (zoneout(new, h, keep[0]),)
