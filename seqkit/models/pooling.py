"""Turn a padded sequence of encoder states into one vector (many-to-one)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import Linear, length_mask

POOLINGS = ("last", "mean", "max", "attention")


class Pooling(nn.Module):
    """``last``: the final states (both directions); ``mean``/``max`` over the valid steps;
    ``attention``: a learned weighted mean, α = softmax(vᵀ tanh(W h<t>)) over valid steps.
    """

    def __init__(self, kind: str, size: int) -> None:
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {kind!r}")
        self.kind = kind
        if kind == "attention":
            self.score = nn.Sequential(Linear(size, size), nn.Tanh(), Linear(size, 1))

    def forward(self, states: Tensor, lengths: Tensor, last: Tensor) -> Tensor:
        """states: (B, T, D) zero past each length; last: (B, D) the final states -> (B, D)."""
        if self.kind == "last":
            return last
        mask = length_mask(lengths, states.size(1), states.device)
        if self.kind == "mean":
            return states.sum(1) / lengths.to(states)[:, None]
        if self.kind == "max":
            return states.masked_fill(~mask[..., None], float("-inf")).max(1).values
        scores = self.score(states).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, T)
        return torch.einsum("bt,btd->bd", scores.softmax(-1), states)
