"""What every recurrent cell shares: torch's parameter contract, layer norm, zoneout, masks.

A cell does one time step. It splits the step into ``project`` (the input half, which does not
depend on the state and so can be computed for a whole sequence in one matmul) and ``step``
(the recurrent half). ``sequence`` loops ``step`` over a packed batch: the readable reference;
layers run the same equations on ``seqkit.kernels``, checked against it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..noise import bernoulli
from ..matmul import linear

State = tuple[Tensor, ...]


def gate_norm(x: Tensor, gain: Tensor, bias: Tensor | None, num_gates: int) -> Tensor:
    """Layer-normalise each gate's pre-activation separately, then scale by ``gain`` and shift.

    x: (..., num_gates * H). Per-gate statistics (as in TF's LayerNormBasicLSTMCell) keep the
    GRU's two-matmul form and the one-matmul form interchangeable.
    """
    hidden = x.size(-1) // num_gates
    y = F.layer_norm(x.unflatten(-1, (num_gates, hidden)), (hidden,)).flatten(-2)
    return y * gain if bias is None else torch.addcmul(bias, y, gain)


def zoneout(new: Tensor, old: Tensor, keep: Tensor | float | None) -> Tensor:
    """Krueger et al. 2017: each unit keeps its previous value where ``keep`` is 1.

    keep: a 0/1 mask drawn with the zoneout rate (training), the rate itself (evaluation: the
    mask's expectation), or None (no zoneout).
    """
    return new if keep is None else torch.lerp(new, old, keep)


class RecurrentCell(nn.Module):
    """Base of RNNCell, GRUCell and LSTMCell: parameters, options, the time loop.

    Parameters follow torch.nn: ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H_out),
    ``bias_ih`` and ``bias_hh`` (G*H), all initialised U(-1/sqrt(H), 1/sqrt(H)).
    Options beyond torch add ``ln_ih_weight``, ``ln_hh_weight`` (layer norm gains, init 1).
    """

    has_cell_state = False  # LSTM carries (h, c), the others h alone

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_gates: int, *,
                 out_size: int | None = None, layer_norm: bool = False, recurrent_dropout: float = 0.0,
                 zoneout: float = 0.0, device=None, dtype=None) -> None:
        super().__init__()
        for name, rate in (("recurrent_dropout", recurrent_dropout), ("zoneout", zoneout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {rate}")
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.num_gates = num_gates
        self.out_size = out_size or hidden_size
        self.layer_norm, self.zoneout = layer_norm, zoneout
        self.recurrent_dropout = recurrent_dropout
        width = num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(width, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(width, self.out_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(width, **factory))
            self.bias_hh = nn.Parameter(torch.empty(width, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if layer_norm:
            self.ln_ih_weight = nn.Parameter(torch.empty(width, **factory))
            self.ln_hh_weight = nn.Parameter(torch.empty(width, **factory))

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters():
            if name.startswith("ln_"):
                nn.init.ones_(p) if name.endswith("weight") else nn.init.zeros_(p)
            else:
                nn.init.uniform_(p, -bound, bound)

    @property
    def options(self) -> dict[str, object]:
        """The options set away from their defaults that torch's fused kernels lack."""
        defaults = {"layer_norm": False, "recurrent_dropout": 0.0, "zoneout": 0.0, **self._extra_defaults()}
        return {k: getattr(self, k) for k, v in defaults.items() if getattr(self, k) != v}

    def _extra_defaults(self) -> dict[str, object]:
        return {}

    # -- the two halves of a step -------------------------------------------------------
    def project(self, x: Tensor, fold_hh: bool = False, norm=gate_norm) -> Tensor:
        """Input half of every gate, W_ih x + b_ih: (..., I) -> (..., G*H); ``fold_hh`` adds
        b_hh too, and ``norm`` stands for ``gate_norm`` (as the kernels do)."""
        bias = self.bias_ih
        if fold_hh and bias is not None:
            bias = bias + self.bias_hh
        if self.layer_norm:
            return norm(linear(x, self.weight_ih), self.ln_ih_weight, bias, self.num_gates)
        return linear(x, self.weight_ih, bias)

    def recurrent(self, h: Tensor, weight: Tensor | None = None, bias: Tensor | None = None,
                  gain: Tensor | None = None) -> Tensor:
        """Recurrent half W_hh h + b_hh, for all gates or for the row block given."""
        if weight is None:
            weight, bias, gain = self.weight_hh, self.bias_hh, getattr(self, "ln_hh_weight", None)
        if self.layer_norm:
            return gate_norm(F.linear(h, weight), gain, bias, weight.size(0) // self.hidden_size)
        return F.linear(h, weight, bias)

    def step(self, gx: Tensor, state: State, mask: Tensor | None, keep: tuple,
             record: list | None = None) -> State:  # pragma: no cover
        """One step from the input half gx (B, G*H) and the state; ``mask`` (B, H_out) drops
        h<t-1> (recurrent dropout), ``keep`` holds zoneout's per state (see ``zoneout``), and a
        dict of the gates is appended to ``record`` if given."""
        raise NotImplementedError

    # -- noise: drawn once per sequence, the same for the step loop and the kernels ----------
    def recurrent_mask(self, batch: int, like: Tensor) -> Tensor | None:
        """Gal & Ghahramani 2016: one dropout mask on h per sequence, reused at every step."""
        if not (self.training and self.recurrent_dropout):
            return None
        keep = 1.0 - self.recurrent_dropout
        return like.new_empty(batch, self.out_size).bernoulli_(keep) / keep

    def zoneout_keep(self, rows: int, like: Tensor) -> tuple[Tensor | float | None, ...]:
        """Per state entry, zoneout's ``keep`` for ``rows`` steps of one sequence (or packed
        rows): a fresh 0/1 mask per row in training, the rate at evaluation. The mask is
        ``noise.bernoulli``'s: torch's generator seeds it, float32 and float64 runs draw the
        same mask, and on CPU all threads draw it (torch.rand draws on one)."""
        rates = (self.zoneout, getattr(self, "zoneout_c", 0.0))
        return tuple(None if not rate else rate if not self.training
                     else bernoulli(rows, n, rate, like)
                     for rate, n in zip(rates, self.state_sizes()))

    def noise(self, batch: int, rows: int, like: Tensor) -> tuple[Tensor | None, tuple]:
        """The recurrent dropout mask (batch, H_out) and zoneout's keep for ``rows`` rows."""
        return self.recurrent_mask(batch, like), self.zoneout_keep(rows, like)

    def state_sizes(self) -> tuple[int, ...]:
        return (self.out_size, self.hidden_size) if self.has_cell_state else (self.out_size,)

    # -- one step, torch.nn semantics --------------------------------------------------------
    def forward(self, input: Tensor, hx=None, mask: Tensor | None = None):
        """One time step. input: (B, I) or (I,); hx as in the torch.nn twin (zeros if None).

        A call without ``mask`` samples a fresh recurrent-dropout mask; layers sample one per
        sequence. For one mask per sequence in a loop of your own, sample it once and pass it::

            mask = cell.recurrent_mask(batch, x[0])   # None outside training
            for x_t in x:
                h = cell(x_t, h, mask=mask)
        """
        if input.dim() not in (1, 2):
            raise ValueError(f"{type(self).__name__}: expected input of 1 or 2 dims, got "
                             f"shape {tuple(input.shape)}")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        if hx is None:
            state = tuple(x.new_zeros(x.size(0), n) for n in self.state_sizes())
        else:
            state = tuple(hx) if self.has_cell_state else (hx,)
            state = state if batched else tuple(s.unsqueeze(0) for s in state)
        if mask is None:
            mask = self.recurrent_mask(x.size(0), x)
        keep = self.zoneout_keep(x.size(0), x)
        new = self.step(self.project(x), state, mask, keep)
        new = new if batched else tuple(s.squeeze(0) for s in new)
        return new if self.has_cell_state else new[0]

    # -- the time loop ------------------------------------------------------------------------
    def sequence(self, x: Tensor, batch_sizes: list[int], state: State, reverse: bool = False,
                 record: list | None = None) -> tuple[Tensor, State]:
        """Run ``step`` over a packed sequence: the reference the kernels are checked against.

        x: (N, I) packed data (time-major, batch sorted by decreasing length, step t holding
        batch_sizes[t] rows); state: tensors of (B, *). Returns the packed outputs (N, H_out)
        and the state at each sequence's end (forward) or start (reverse).
        In reverse the active batch grows: rows joining at step t start from ``state``.
        ``record``: a list that gets each step's gates, in processing order.
        """
        gx = self.project(x)  # (N, G*H): the input matmul for every step at once
        mask, keep = self.noise(state[0].size(0), x.size(0), x)
        offsets = [0]
        for b in batch_sizes:
            offsets.append(offsets[-1] + b)
        outputs: list[Tensor] = [x] * len(batch_sizes)
        steps = range(len(batch_sizes))
        for t in reversed(steps) if reverse else steps:
            b, rows = batch_sizes[t], slice(offsets[t], offsets[t + 1])
            active = tuple(s[:b] for s in state)
            new = self.step(gx[rows], active, None if mask is None else mask[:b],
                            tuple(k[rows] if isinstance(k, Tensor) else k for k in keep), record)
            outputs[t] = new[0]
            full = state[0].size(0)
            state = new if b == full else tuple(torch.cat((n, s[b:])) for n, s in zip(new, state))
        return torch.cat(outputs), state
