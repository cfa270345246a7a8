"""One time step of each recurrent cell, written from the equations."""
from .base import RecurrentCell
from .gru import GRUCell
from .lstm import LSTMCell
from .rnn import RNNCell

__all__ = ["RecurrentCell", "RNNCell", "GRUCell", "LSTMCell"]
