"""Ancestral sampling with temperature, top-k and nucleus (top-p) truncation.

At each step the model's log-probs l (N, V) become logits l / temperature; top-k keeps the k
largest, top-p then keeps the smallest set of the most probable tokens whose (renormalised)
probability reaches p; the next token is drawn from the softmax of what is left.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .search import Decoded, Step, check_at_least, decode


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """``logits`` (N, V) with all but each row's k largest at -inf; k = 0 keeps everything.

    Exactly k survive even when the k-th value is tied, so no more than k tokens can be drawn.
    """
    if k == 0 or k >= logits.shape[-1]:
        return logits
    kept = logits.topk(k, dim=-1)
    return torch.full_like(logits, float("-inf")).scatter(-1, kept.indices, kept.values)


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """``logits`` (N, V) restricted to each row's nucleus, the other tokens at -inf.

    The nucleus is the smallest set of most probable tokens whose probability sums to >= p:
    a token stays when the tokens ranked above it hold less than p, so the top one always does.
    """
    if p >= 1.0:
        return logits
    ranked, order = logits.sort(dim=-1, descending=True)           # (N, V)
    probs = ranked.softmax(dim=-1)
    mass_above = probs.cumsum(dim=-1) - probs                      # exactly 0 for the top token
    ranked = ranked.masked_fill(mass_above >= p, float("-inf"))
    return logits.scatter(-1, order, ranked)


def sample(step: Step, state: Any, bos: int | Tensor, eos: int, max_len: int, *,
           temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_len: int = 0,
           generator: torch.Generator | None = None, pad: int | None = None) -> Decoded:
    """One sampled sequence per row, drawn with ``torch.multinomial`` from ``generator``
    (the global one if None), so a seeded generator reproduces a sample exactly.

    temperature -> 0 approaches greedy decoding (the softmax becomes one-hot at the argmax);
    temperature = 0 is greedy decoding exactly and draws nothing. The scores are the model's
    own log-probabilities of the drawn tokens, not the tempered or truncated ones, so they are
    comparable across settings. Returns ``Decoded`` as ``greedy`` does.
    """
    check_at_least("temperature", temperature, 0.0)
    check_at_least("top_k", top_k, 0)
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")

    def choose(log_probs: Tensor) -> Tensor:                       # (N, V) -> (N,)
        if temperature == 0:
            return log_probs.argmax(dim=-1)
        logits = top_p_filter(top_k_filter(log_probs / temperature, top_k), top_p)
        return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)

    return decode(step, state, bos, eos, max_len, choose, min_len=min_len, pad=pad)
