"""Gated recurrent unit, in cuDNN's form and in the article's."""
from __future__ import annotations

import torch

from .base import RecurrentCell, State, zoneout


class GRUCell(RecurrentCell):
    r"""The GRU cell, ``torch.nn.GRUCell``'s twin.

    The article writes the memory c<t> = a<t>, the update gate Γu and the relevance (reset)
    gate Γr::

        Γr = σ(W_r [c<t-1>; x<t>] + b_r)
        Γu = σ(W_u [c<t-1>; x<t>] + b_u)
        c̃<t> = tanh(W_c [Γr ⋆ c<t-1>; x<t>] + b_c)          (reset_after=False)
        c<t> = Γu ⋆ c̃<t> + (1 - Γu) ⋆ c<t-1>

    torch and cuDNN (``reset_after=True``, the default) apply the reset gate after the hidden
    matmul, c̃<t> = tanh(W_cx x<t> + b_cx + Γr ⋆ (W_cc c<t-1> + b_cc)), and name the update
    gate z = 1 - Γu: h = (1 - z) ⋆ n + z ⋆ h_prev. Rows of ``weight_ih``/``weight_hh`` are
    ordered r, z, n (Γr, 1 - Γu, c̃); each W_. [c; x] above is W_.h c + W_.x x with two biases.
    Only the cuDNN form loads into ``torch.nn.GRUCell`` with the same meaning.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, *, reset_after: bool = True, layer_norm: bool = False,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, bias, 3, layer_norm=layer_norm,
                         recurrent_dropout=recurrent_dropout, zoneout=zoneout,
                         device=device, dtype=dtype)
        self.reset_after = reset_after
        self.reset_parameters()

    def _extra_defaults(self):
        return {"reset_after": True}

    def step(self, gx, state: State, mask, keep, record=None) -> State:
        (h,) = state  # (B, H)
        hd = h if mask is None else h * mask
        x_r, x_z, x_n = gx.chunk(3, 1)
        if self.reset_after:
            h_r, h_z, h_n = self.recurrent(hd).chunk(3, 1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
        else:  # the article's form: reset before the hidden matmul, so two matmuls
            def rows(block: slice):  # weight, bias and LN gain of one block of gates
                pick = [self.bias_hh, getattr(self, "ln_hh_weight", None)]
                return (self.weight_hh[block], *(None if p is None else p[block] for p in pick))

            H = self.hidden_size
            h_r, h_z = self.recurrent(hd, *rows(slice(0, 2 * H))).chunk(2, 1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + self.recurrent(r * hd, *rows(slice(2 * H, 3 * H))))
        new = torch.lerp(n, h, z)  # (1 - z) n + z h
        if record is not None:
            record.append({"update": 1.0 - z, "reset": r, "candidate": n, "hidden": new})
        return (zoneout(new, h, keep[0]),)
