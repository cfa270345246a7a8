"""A linear-chain CRF over per-token tag scores, optionally held to a tag scheme's legal moves.

For emissions e (n, K) of one sentence, tags y_1..y_n score

    s(y) = start[y_1] + sum_t e_t[y_t] + sum_{t>1} trans[y_{t-1}, y_t] + end[y_n]

and p(y | e) = exp(s(y)) / Z. The forward algorithm gives log Z in O(n K^2):

    a_1 = start + e_1,   a_t[j] = logsumexp_i(a_{t-1}[i] + trans[i, j]) + e_t[j],
    log Z = logsumexp_j(a_n[j] + end[j]);

Viterbi is the same recursion with max for logsumexp, plus back-pointers. Batches are
left-aligned with a (B, T) bool mask; every sequence has length >= 1.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..metrics.spans import transition_allowed

# What a forbidden move scores in the loss: e^-1e4 is 0 even in float64, so forbidden paths
# add nothing to Z; but it is finite (and fits float16), so a gold path with a forbidden move
# gives a large loss rather than inf, and a tag no path reaches gives no NaN gradients.
# Decoding uses -inf instead, so a forbidden move is never chosen.
FORBIDDEN = -1e4


def allowed_transitions(tag_names: Sequence[str], scheme: str) -> tuple[Tensor, Tensor, Tensor]:
    """The moves a well-formed ``scheme`` sequence (IOB1, IOB2, IOBES) can make between tags:
    allowed (K, K) with allowed[i, j] when tag j may follow tag i, allowed_start (K,) and
    allowed_end (K,) for the tags a sentence may start and end with. Bool tensors."""
    def row(pairs) -> list[bool]:
        return [transition_allowed(a, b, scheme) for a, b in pairs]
    allowed = torch.tensor([row((a, b) for b in tag_names) for a in tag_names], dtype=torch.bool)
    start = torch.tensor(row(("O", b) for b in tag_names), dtype=torch.bool)
    end = torch.tensor(row((a, "O") for a in tag_names), dtype=torch.bool)
    return allowed.view(len(tag_names), len(tag_names)), start, end


class CRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags: learnt transitions (K, K) (``[i, j]`` scores
    a move from i to j), start_transitions and end_transitions (K,).

    ``allowed``, ``allowed_start``, ``allowed_end`` (bool, shapes as returned by
    ``allowed_transitions``) forbid moves; None allows all. They are buffers kept out of the
    state_dict, whose keys are thus those of pytorch-crf's ``CRF``.
    """

    def __init__(self, num_tags: int, allowed: Tensor | None = None,
                 allowed_start: Tensor | None = None, allowed_end: Tensor | None = None) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be >= 1, got {num_tags}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        for name, mask, shape in (("allowed", allowed, (num_tags, num_tags)),
                                  ("allowed_start", allowed_start, (num_tags,)),
                                  ("allowed_end", allowed_end, (num_tags,))):
            mask = torch.ones(shape, dtype=torch.bool) if mask is None else torch.as_tensor(mask)
            if mask.shape != shape or mask.dtype != torch.bool:
                raise ValueError(f"{name} must be a bool tensor of shape {shape}, got "
                                 f"{mask.dtype} {tuple(mask.shape)}")
            self.register_buffer(name, mask, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # zeros: until training moves them, the emissions alone rank the paths
        for p in (self.transitions, self.start_transitions, self.end_transitions):
            nn.init.zeros_(p)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    def _potentials(self, forbidden: float) -> tuple[Tensor, Tensor, Tensor]:
        """transitions (K, K), start and end (K,) with forbidden moves set to ``forbidden``."""
        return (self.transitions.masked_fill(~self.allowed, forbidden),
                self.start_transitions.masked_fill(~self.allowed_start, forbidden),
                self.end_transitions.masked_fill(~self.allowed_end, forbidden))

    def _check(self, emissions: Tensor, mask: Tensor | None) -> Tensor:
        """The mask as bool (B, T), all True when None; ValueError for bad shapes."""
        if emissions.dim() != 3 or emissions.size(2) != self.num_tags or emissions.size(1) < 1:
            raise ValueError(f"emissions must be (B, T >= 1, {self.num_tags}), got "
                             f"{tuple(emissions.shape)}")
        if mask is None:
            return emissions.new_ones(emissions.shape[:2], dtype=torch.bool)
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask must be (B, T) = {tuple(emissions.shape[:2])}, got "
                             f"{tuple(mask.shape)}")
        mask = mask.bool()
        if not mask[:, 0].all():
            raise ValueError("every sequence needs length >= 1: mask[:, 0] must be all True")
        return mask

    def log_partition(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """log Z (B,) of emissions (B, T, K) under mask (B, T), by the forward algorithm."""
        mask = self._check(emissions, mask)
        return self._log_partition(emissions, mask, *self._potentials(FORBIDDEN))

    def _log_partition(self, emissions: Tensor, mask: Tensor, trans: Tensor, start: Tensor,
                       end: Tensor) -> Tensor:
        steps = zip(emissions.unbind(1)[1:], mask.unsqueeze(2).unbind(1)[1:])
        trans = trans.unsqueeze(0)  # (1, K, K), broadcast over the batch
        alpha = start + emissions[:, 0]  # (B, K)
        for emitted, live in steps:  # (B, K), (B, 1)
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + emitted  # (B, K)
            alpha = torch.where(live, nxt, alpha)  # a finished sequence keeps its alpha
        return torch.logsumexp(alpha + end, dim=1)

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """s(tags) (B,) of tag ids (B, T); tags under a False mask are ignored (any value)."""
        mask = self._check(emissions, mask)
        return self._score(emissions, tags, mask, *self._potentials(FORBIDDEN))

    def _score(self, emissions: Tensor, tags: Tensor, mask: Tensor, trans: Tensor,
               start: Tensor, end: Tensor) -> Tensor:
        if tags.shape != mask.shape:
            raise ValueError(f"tags must be (B, T) = {tuple(mask.shape)}, got "
                             f"{tuple(tags.shape)}")
        tags = tags.masked_fill(~mask, 0)  # padding may hold -100 or the like
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        moved = trans[tags[:, :-1], tags[:, 1:]]  # (B, T - 1)
        last = tags.gather(1, mask.sum(1, keepdim=True) - 1).squeeze(1)  # (B,)
        zero = emitted.new_zeros(())  # where, not a product: padding may hold inf or NaN
        return (start[tags[:, 0]] + torch.where(mask, emitted, zero).sum(1)
                + torch.where(mask[:, 1:], moved, zero).sum(1) + end[last])

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None,
            reduction: str = "mean") -> Tensor:
        """-log p(tags | emissions) = log Z - s(tags): (B,) for reduction "none", else its
        mean or sum over the batch."""
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        mask = self._check(emissions, mask)
        potentials = self._potentials(FORBIDDEN)
        nll = (self._log_partition(emissions, mask, *potentials)
               - self._score(emissions, tags, mask, *potentials))
        return nll if reduction == "none" else getattr(nll, reduction)()

    forward = nll  # crf(emissions, tags, mask) is the loss

    def viterbi(self, emissions: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The best path of each sequence: tag ids (B, T), 0 past each length, and its score
        s(path) (B,). No path takes a forbidden move."""
        mask = self._check(emissions, mask)
        return best_paths(emissions, mask, *self._potentials(float("-inf")))

    def decode(self, emissions: Tensor, mask: Tensor | None = None) -> list[list[int]]:
        """The Viterbi path of each sequence as a list of tag ids, cut to its length."""
        tags, _ = self.viterbi(emissions, mask)
        lengths = [tags.size(1)] * tags.size(0) if mask is None else mask.sum(1).tolist()
        return [row[:n] for row, n in zip(tags.tolist(), lengths)]


def best_paths(emissions: Tensor, mask: Tensor, trans: Tensor, start: Tensor,
               end: Tensor) -> tuple[Tensor, Tensor]:
    """Viterbi: the best tag path (B, T) of emissions (B, T, K) under mask (B, T), 0 past each
    length, and its score (B,), for potentials with forbidden moves at -inf. Written for
    ``torch.jit.script`` too (seqkit.export), so the time loop stays a loop in an export."""
    batch, K = emissions.size(0), emissions.size(2)
    stay = torch.arange(K, device=emissions.device).expand(batch, K)
    score = start + emissions[:, 0]  # (B, K): best score of a path ending in each tag
    pointers: list[Tensor] = []  # (B, K) each: the best previous tag of each tag
    for t in range(1, emissions.size(1)):
        best, prev = (score.unsqueeze(2) + trans).max(dim=1)
        live = mask[:, t].unsqueeze(1)
        score = torch.where(live, best + emissions[:, t], score)
        pointers.append(torch.where(live, prev, stay))  # padding points a tag to itself
    best_score, tag = (score + end).max(dim=1)  # (B,)
    path = [tag]  # from the last step back
    for i in range(len(pointers)):
        tag = pointers[len(pointers) - 1 - i].gather(1, tag.unsqueeze(1)).squeeze(1)
        path.append(tag)
    return torch.stack(path, dim=1).flip(1).masked_fill(~mask, 0), best_score


__all__ = ["CRF", "FORBIDDEN", "allowed_transitions", "best_paths"]
