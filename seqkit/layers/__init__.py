"""Time loops, stacks and the fused twin."""
from .recurrent import GRU, LSTM, RNN, Recurrent, recurrent

__all__ = ["Recurrent", "RNN", "GRU", "LSTM", "recurrent"]
