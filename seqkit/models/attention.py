"""Attention of decoder states over encoder outputs: dot and general (Luong et al. 2015),
additive (Bahdanau et al. 2015).

Each scorer splits its work in two: ``keys(memory)`` depends only on the encoder outputs, so
decoding computes it once per sentence; ``scores(query, keys)`` runs at every step. Both
take a whole sequence of queries at once, (B, T, Q), so teacher forcing without input
feeding attends for all steps in one call, and one decoding step is T = 1.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import Linear


class DotAttention(nn.Module):
    """score(q, m) = q · m; needs query_size == memory_size."""

    def __init__(self, query_size: int, memory_size: int) -> None:
        super().__init__()
        if query_size != memory_size:
            raise ValueError(f"dot attention needs query_size == memory_size, got "
                             f"{query_size} and {memory_size}; use 'general' or 'additive'")

    def keys(self, memory: Tensor) -> Tensor:
        return memory

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        """query (B, T, Q), keys (B, S, Q) -> (B, T, S)."""
        return torch.bmm(query, keys.transpose(1, 2))


class GeneralAttention(nn.Module):
    """score(q, m) = q · W m (Luong's "general"); keys are W m, computed once."""

    def __init__(self, query_size: int, memory_size: int) -> None:
        super().__init__()
        self.weight = Linear(memory_size, query_size, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        return self.weight(memory)  # (B, S, Q)

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        """query (B, T, Q), keys (B, S, Q) -> (B, T, S)."""
        return torch.bmm(query, keys.transpose(1, 2))


class AdditiveAttention(nn.Module):
    """score(q, m) = v · tanh(W_q q + W_m m) (Bahdanau's MLP, Luong's "concat").

    ``scores`` takes an optional ``bias`` (B, T, S, A) added inside the tanh: where coverage
    (See et al. 2017) enters, as W_c · coverage.
    """

    def __init__(self, query_size: int, memory_size: int, attention_size: int | None = None):
        super().__init__()
        size = attention_size or query_size
        self.query = Linear(query_size, size, bias=True)
        self.memory = Linear(memory_size, size, bias=False)
        self.v = Linear(size, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        return self.memory(memory)  # (B, S, A)

    def scores(self, query: Tensor, keys: Tensor, bias: Tensor | None = None) -> Tensor:
        """query (B, T, Q), keys (B, S, A) -> (B, T, S)."""
        hidden = keys[:, None] + self.query(query)[:, :, None]  # (B, T, S, A)
        if bias is not None:
            hidden = hidden + bias
        return self.v(torch.tanh(hidden)).squeeze(-1)


def attend(scores: Tensor, mask: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax over the source positions that ``mask`` keeps, then the weighted sum.

    scores (B, T, S), memory (B, S, M) -> context (B, T, M) and weights (B, T, S): each
    row of weights sums to 1 and is exactly 0 where masked. ``mask`` is (B, S), the same for
    every query, or 3-D and broadcast to (B, T, S), one row per query (a causal mask).
    """
    keep = mask if mask.dim() == 3 else mask[:, None, :]
    weights = scores.masked_fill(~keep, float("-inf")).softmax(-1)
    return torch.bmm(weights, memory), weights
