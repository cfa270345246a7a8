"""Long short-term memory cell."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import RecurrentCell, State, zoneout


class LSTMCell(RecurrentCell):
    r"""The LSTM cell, ``torch.nn.LSTMCell``'s twin.

    In the article's notation (a<t> the hidden state, c<t> the memory cell)::

        Γu = σ(W_u [a<t-1>; x<t>] + b_u)          update (input) gate      torch: i
        Γf = σ(W_f [a<t-1>; x<t>] + b_f)          forget gate              torch: f
        c̃<t> = tanh(W_c [a<t-1>; x<t>] + b_c)     candidate memory         torch: g
        Γo = σ(W_o [a<t-1>; x<t>] + b_o)          output gate              torch: o
        c<t> = Γu ⋆ c̃<t> + Γf ⋆ c<t-1>
        a<t> = Γo ⋆ tanh(c<t>)

    Rows of ``weight_ih``/``weight_hh`` are ordered i, f, g, o as in torch and cuDNN; each
    W_. [a; x] is W_.h a + W_.x x, with ``bias_ih`` + ``bias_hh`` as b_. (``hx`` = (a, c)).

    Options beyond torch:
      - ``proj_size`` > 0: a<t> = W_hr (Γo ⋆ tanh(c<t>)) (Sak et al. 2014), as torch.nn.LSTM.
      - ``peephole``: Γu and Γf also see c<t-1>, Γo sees c<t>, through diagonal weights
        ``weight_ch`` (rows i, f, o; Gers & Schmidhuber 2000).
      - ``coupled``: Γu = 1 - Γf; the gate rows are then f, g, o.
      - ``layer_norm``: each gate's matmuls are layer-normalised, and c<t> before the tanh
        (Ba et al. 2016), with gains ``ln_ih_weight``, ``ln_hh_weight``, ``ln_c_weight`` and
        shift ``ln_c_bias``.
      - ``recurrent_dropout``: a<t-1> is dropped before W_h with one mask per sequence
        (Gal & Ghahramani 2016).
      - ``zoneout`` / ``zoneout_c``: a unit of a<t> / c<t> keeps its previous value with that
        probability in training, and the expectation is used at evaluation (Krueger et al. 2017).
    """

    has_cell_state = True

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, *, proj_size: int = 0, peephole: bool = False,
                 coupled: bool = False, layer_norm: bool = False,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0,
                 zoneout_c: float = 0.0) -> None:
        if proj_size < 0 or proj_size >= hidden_size and proj_size:
            raise ValueError(f"proj_size must be in [0, hidden_size), got {proj_size}")
        if not 0.0 <= zoneout_c < 1.0:
            raise ValueError(f"zoneout_c must be in [0, 1), got {zoneout_c}")
        super().__init__(input_size, hidden_size, bias, 3 if coupled else 4,
                         out_size=proj_size or None, layer_norm=layer_norm,
                         recurrent_dropout=recurrent_dropout, zoneout=zoneout,
                         device=device, dtype=dtype)
        self.proj_size, self.peephole, self.coupled = proj_size, peephole, coupled
        self.zoneout_c = zoneout_c
        factory = {"device": device, "dtype": dtype}
        if proj_size:
            self.weight_hr = nn.Parameter(torch.empty(proj_size, hidden_size, **factory))
        if peephole:
            self.weight_ch = nn.Parameter(torch.empty((2 if coupled else 3) * hidden_size,
                                                      **factory))
        if layer_norm:
            self.ln_c_weight = nn.Parameter(torch.empty(hidden_size, **factory))
            self.ln_c_bias = nn.Parameter(torch.empty(hidden_size, **factory))
        self.reset_parameters()

    def _extra_defaults(self):
        return {"peephole": False, "coupled": False, "zoneout_c": 0.0}

    def step(self, gx, state: State, mask, keep, record=None) -> State:
        h, c = state  # (B, H_out), (B, H)
        gates = gx + self.recurrent(h if mask is None else h * mask)
        if self.coupled:
            f, g, o = gates.chunk(3, 1)
        else:
            i, f, g, o = gates.chunk(4, 1)
        if self.peephole:
            *p_if, p_o = self.weight_ch.chunk(2 if self.coupled else 3)
            f = f + p_if[-1] * c
            if not self.coupled:
                i = i + p_if[0] * c
        f = torch.sigmoid(f)
        i = 1.0 - f if self.coupled else torch.sigmoid(i)
        c_new = f * c + i * torch.tanh(g)
        if self.peephole:
            o = o + p_o * c_new
        if self.layer_norm:
            c_shown = F.layer_norm(c_new, (self.hidden_size,), self.ln_c_weight, self.ln_c_bias)
        else:
            c_shown = c_new
        o = torch.sigmoid(o)
        h_new = o * torch.tanh(c_shown)
        if record is not None:
            record.append({"update": i, "forget": f, "output": o, "cell": c_new})
        if self.proj_size:
            h_new = F.linear(h_new, self.weight_hr)
        return zoneout(h_new, h, keep[0]), zoneout(c_new, c, keep[1])
