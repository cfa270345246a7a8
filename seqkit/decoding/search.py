"""What every search shares: the step contract, the result types, row selection, and the
one-path-per-row loop behind greedy decoding and sampling.

A model decodes through a ``Step``:

    log_probs, new_state = step(tokens, state)

where ``tokens`` (N,) holds the last token emitted by each of N rows (the ``bos`` token at
the first step) and ``log_probs`` (N, V) are normalised log-probabilities over the vocabulary,
or over an extended vocabulary (a copy mechanism's), as long as V stays fixed during a search.
``state`` is any pytree (nested tuples, lists, dicts, named tuples) whose tensor leaves have
the row in dim 0; the searches reorder and expand it with ``select_rows``. A recurrent layer's
(num_layers, N, H) hidden state must therefore travel batch-first, as (N, num_layers, H):
``layer_step`` adapts a step written for the layer's own layout, and ``swap_layers`` turns
its starting state around.

The batch size B is bos's length when ``bos`` is a (B,) tensor, else dim 0 of the state's
first tensor leaf (in ``torch.utils._pytree`` leaf order, which is insertion order for dicts).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils._pytree import tree_leaves, tree_map

Step = Callable[[Tensor, Any], tuple[Tensor, Any]]


class Decoded(NamedTuple):
    """One decoded sequence per row.

    tokens (B, T): the emitted tokens, T <= max_len, padded after eos with ``pad``.
    lengths (B,): tokens up to and including eos where one was emitted, else T.
    scores (B,): sum of the model's log-probabilities of the emitted tokens (pads excluded).
    """
    tokens: Tensor
    lengths: Tensor
    scores: Tensor


class Hypothesis(NamedTuple):
    """One beam-search result: ``tokens`` without bos (ending with eos if one was emitted),
    ``score`` the length-normalised log-probability that ranks it, ``log_prob`` the raw sum."""
    tokens: list[int]
    score: float
    log_prob: float


def swap_layers(state: Any) -> Any:
    """A recurrent layer's state, (num_layers, N, H) per tensor (its ``h_n`` or ``(h_n, c_n)``),
    as the searches carry it, (N, num_layers, H), and back: every tensor leaf's first two
    dimensions swapped."""
    return tree_map(lambda leaf: leaf.transpose(0, 1) if isinstance(leaf, Tensor) else leaf,
                    state)


def layer_step(step: Step) -> Step:
    """A search's step from ``step``, which takes and returns its recurrent layer's state as
    the layer does, (num_layers, N, H); start the search from ``swap_layers(state)``."""
    def batch_first(tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        log_probs, state = step(tokens, swap_layers(state))
        return log_probs, swap_layers(state)
    return batch_first


def select_rows(state: Any, index: Tensor) -> Any:
    """``state`` with every tensor leaf replaced by ``leaf.index_select(0, index)``.

    ``index`` (M,) long picks (and may repeat) rows, so it both reorders beams and expands a
    batch. Non-tensor leaves and 0-dim tensors (a step counter, say) pass through unchanged.
    """
    def select(leaf: Any) -> Any:
        if not isinstance(leaf, Tensor) or leaf.dim() == 0:
            return leaf
        return leaf.index_select(0, index.to(leaf.device))
    return tree_map(select, state)


def start_tokens(bos: int | Tensor, state: Any) -> Tensor:
    """The first input of every row, (B,) long, on the device of ``bos`` or of the state.

    B is len(bos) for a tensor ``bos``, else dim 0 of the state's first tensor leaf.
    """
    rows = [leaf for leaf in tree_leaves(state) if isinstance(leaf, Tensor) and leaf.dim() > 0]
    if isinstance(bos, Tensor):
        if bos.dim() != 1:
            raise ValueError(f"bos must be an int or a (B,) tensor, got shape {tuple(bos.shape)}")
        if rows and rows[0].shape[0] != bos.shape[0]:
            raise ValueError(f"bos has {bos.shape[0]} rows but the state's first tensor has "
                             f"{rows[0].shape[0]}")
        return bos.long()
    if not rows:
        raise ValueError("the state has no tensor to take the batch size from; "
                         "pass bos as a (B,) tensor")
    return torch.full((rows[0].shape[0],), int(bos), dtype=torch.long, device=rows[0].device)


def forbid_eos(log_probs: Tensor, eos: int) -> Tensor:
    """``log_probs`` (N, V) with column ``eos`` at -inf; a copy, as the model may keep its
    output (or need it for a backward pass)."""
    return log_probs.index_fill(1, torch.tensor([eos], device=log_probs.device), float("-inf"))


def check_at_least(name: str, value: float, low: float) -> None:
    """Raise ValueError naming ``name`` unless ``value >= low``."""
    if not value >= low:  # also catches NaN
        raise ValueError(f"{name} must be >= {low}, got {value}")


def decode(step: Step, state: Any, bos: int | Tensor, eos: int, max_len: int,
           choose: Callable[[Tensor], Tensor], *, min_len: int = 0,
           pad: int | None = None) -> Decoded:
    """One path per row: ``choose`` maps each step's log-probs (B, V) to the next tokens (B,).

    Stops after max_len tokens or when every row has emitted eos. eos is forbidden while a
    row has fewer than ``min_len`` tokens. A finished row keeps feeding eos to the model (any
    in-vocabulary id would do) while the others go on; its output is padded with ``pad``
    (default eos) and its score no longer changes.
    """
    check_at_least("max_len", max_len, 1)
    check_at_least("min_len", min_len, 0)
    pad = eos if pad is None else pad
    tokens = start_tokens(bos, state)                              # (B,)
    finished = torch.zeros_like(tokens, dtype=torch.bool)
    lengths = torch.zeros_like(tokens)
    scores = torch.zeros(tokens.shape, device=tokens.device)       # promoted to the model's dtype
    emitted = []
    for t in range(max_len):
        log_probs, state = step(tokens, state)                     # (B, V)
        if t < min_len:
            log_probs = forbid_eos(log_probs, eos)
        chosen = choose(log_probs)                                 # (B,)
        gained = log_probs.gather(1, chosen[:, None]).squeeze(1)
        scores = scores + gained.masked_fill(finished, 0.0)
        lengths += ~finished
        emitted.append(chosen.masked_fill(finished, pad))
        tokens = chosen.masked_fill(finished, eos)
        finished |= chosen == eos
        if bool(finished.all()):
            break
    return Decoded(torch.stack(emitted, dim=1), lengths, scores)


def greedy(step: Step, state: Any, bos: int | Tensor, eos: int, max_len: int,
           min_len: int = 0, *, pad: int | None = None) -> Decoded:
    """The most probable token at every step, for each of the B rows (see ``decode``).

    Returns ``Decoded``: tokens (B, T) padded after eos, lengths (B,), scores (B,).
    """
    return decode(step, state, bos, eos, max_len, lambda log_probs: log_probs.argmax(dim=-1),
                  min_len=min_len, pad=pad)
