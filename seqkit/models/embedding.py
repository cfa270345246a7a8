"""Input-side pieces shared by the models."""
from __future__ import annotations

import torch
from torch import Tensor


def drop_words(tokens: Tensor, p: float, unk_index: int, pad_index: int = 0) -> Tensor:
    """Replace each non-padding token id with ``unk_index`` with probability p (word dropout,
    Iyyer et al. 2015; Lample et al. 2016 do it for singletons), so <unk> gets trained."""
    if p == 0.0:
        return tokens
    drop = torch.rand(tokens.shape, device=tokens.device) < p
    return tokens.masked_fill(drop & (tokens != pad_index), unk_index)
