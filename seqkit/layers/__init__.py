"""Time loops, stacks and the fused twin."""
from .recurrent import GRU, LSTM, RNN, Recurrent, gate_trace, length_mask, recurrent

__all__ = ["Recurrent", "RNN", "GRU", "LSTM", "recurrent", "length_mask", "gate_trace"]
