"""seqkit's recurrent building blocks, drop-in twins of torch.nn's."""
from ..cells import GRUCell, LSTMCell, RNNCell
from ..layers import GRU, LSTM, RNN

__all__ = ["RNNCell", "GRUCell", "LSTMCell", "RNN", "GRU", "LSTM"]
