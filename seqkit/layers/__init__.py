"""Time loops, stacks and the fused twin; dropout; Linear (products on oneDNN, seqkit.matmul)."""
from ..matmul import Linear
from .dropout import Dropout, dropout, keep_mask
from .recurrent import GRU, LSTM, RNN, Recurrent, gate_trace, length_mask

__all__ = ["Recurrent", "RNN", "GRU", "LSTM", "length_mask", "gate_trace",
           "Dropout", "dropout", "keep_mask", "Linear"]
