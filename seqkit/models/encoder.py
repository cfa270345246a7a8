"""The contract between a model and its recurrent layers: a model receives a partial.

A config names the layer and its options as a Hydra partial; the model calls it with the
size of its inputs, ``encoder(input_size=I)``::

    encoder:
      _target_: seqkit.layers.LSTM      # GRU, RNN, seqkit.layers.Recurrent with a cell of
      _partial_: true                   # your own, or any class that keeps this contract
      hidden_size: 256
      bidirectional: true
      batch_first: true

The layer it returns reads batch-first input, ``layer(x (B, T, I), hx, lengths=) -> output
(B, T, output_size), final state``, the final state as torch.nn's (``h_n`` or ``(h_n, c_n)``,
each (L * D, B, H)), and says its ``output_size`` and whether it is ``bidirectional``. Seq2Seq's
encoder and decoder layers also say their ``num_layers`` and ``state_sizes`` (each state's
features: (H_out,) or (H_out, H) for an LSTM's h and c), which its bridge reads.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

Encoder = Callable[[int], nn.Module]


def build(encoder: Encoder, input_size: int, role: str = "encoder") -> nn.Module:
    """``encoder(input_size=input_size)``, checked against the contract above."""
    layer = encoder(input_size=input_size)
    missing = [name for name in ("output_size", "bidirectional", "batch_first")
               if not hasattr(layer, name)]
    if missing:
        raise TypeError(f"the model's {role} {type(layer).__name__} lacks "
                        f"{', '.join(missing)}: a recurrent layer says its output_size and "
                        f"whether it is bidirectional and batch_first")
    if not layer.batch_first:
        raise ValueError(f"the model's {role} reads batch-first input: set batch_first: true "
                         f"in its config")
    return layer
