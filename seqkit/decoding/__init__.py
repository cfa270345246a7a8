"""Model-agnostic decoding: greedy, beam search and sampling over a ``Step`` function.

A model exposes ``step(tokens (N,), state) -> (log_probs (N, V), new_state)``; the searches
own the loop, the bookkeeping and the reordering of ``state`` (see ``search``).
"""
from .beam import LENGTH_PENALTIES, beam_search, normalised_score
from .sampling import sample, top_k_filter, top_p_filter
from .search import (Decoded, Hypothesis, Step, decode, greedy, layer_step, select_rows,
                     swap_layers)

__all__ = ["Step", "Decoded", "Hypothesis", "select_rows", "layer_step", "swap_layers",
           "decode", "greedy", "beam_search",
           "sample", "normalised_score", "LENGTH_PENALTIES", "top_k_filter", "top_p_filter"]
