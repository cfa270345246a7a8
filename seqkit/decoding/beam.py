"""Beam search, batched over B sentences x K beams = N rows of the model (row b * K + k).

Each step extends the K live hypotheses of a sentence by every token, giving K * V candidates
scored by their summed log-probability, and keeps the 2K best. An eos candidate among the
first K is a finished hypothesis and is set aside; the K best other candidates become the new
beams. Taking 2K guarantees K non-eos candidates (at most one eos per beam), and admitting eos
only from the first K makes beam size 1 exactly greedy decoding. Live beams all have the same
length, so the raw sum ranks them; finished hypotheses of different lengths are ranked by

    gnmt:  score = log_prob / ((5 + |Y|) / 6) ** alpha        (Wu et al., 2016)
    avg:   score = log_prob / |Y| ** alpha

with |Y| counting eos, alpha = length_penalty (0: raw log-probability either way).

When a sentence stops is ``stop``'s choice:

    exact: once it has n_best finished hypotheses that no live beam can beat (``Finalists``),
           so the result is the best the beam can find;
    top:   once its best candidate is eos and it has n_best finished hypotheses, as
           OpenNMT-py's beam search does: fewer steps, and a longer hypothesis that would
           have overtaken the first finished one under the length penalty is not waited for.
"""
from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
from torch import Tensor

from .search import Hypothesis, Step, check_at_least, forbid_eos, select_rows, start_tokens

LENGTH_PENALTIES = {
    "gnmt": lambda length, alpha: ((5 + length) / 6) ** alpha,
    "avg": lambda length, alpha: length ** alpha,
}


def normalised_score(log_prob: float, length: int, alpha: float, penalty: str = "gnmt") -> float:
    """``log_prob`` of a ``length``-token hypothesis divided by its length penalty."""
    return log_prob / LENGTH_PENALTIES[penalty](length, alpha)


class Finalists:
    """The n best finished hypotheses of one sentence, best first."""

    def __init__(self, n: int, alpha: float, penalty: str) -> None:
        self.n, self.alpha, self.penalty = n, alpha, penalty
        self.kept: list[Hypothesis] = []

    def score(self, log_prob: float, length: int) -> float:
        return normalised_score(log_prob, length, self.alpha, self.penalty)

    def add(self, tokens: list[int], log_prob: float) -> None:
        self.kept.append(Hypothesis(tokens, self.score(log_prob, len(tokens)), log_prob))
        self.kept.sort(key=lambda h: h.score, reverse=True)        # stable: earlier wins ties
        del self.kept[self.n:]

    def can_improve(self, live_log_prob: float, length: int, max_len: int) -> bool:
        """Whether a live beam of ``length`` tokens with raw ``live_log_prob`` (the sentence's
        best) could still enter the n best.

        Extending a beam never raises its raw log-probability s (log-probs are <= 0), and it
        ends with a length L in (length, max_len]; s / lp(L) bounds its score. lp is monotone
        in L, so the bound is the larger of the two ends.
        """
        if live_log_prob == float("-inf") or length >= max_len:
            return False
        if len(self.kept) < self.n:
            return True
        bound = max(self.score(live_log_prob, length + 1), self.score(live_log_prob, max_len))
        return bound > self.kept[-1].score


def banned_ngrams(history: Tensor, n: int, vocab_size: int) -> Tensor:
    """Tokens that would complete an n-gram already in the row's history, (N, V) bool.

    history (N, t): the emitted tokens. The candidate n-gram is the last n - 1 tokens plus
    the next one, so a token is banned where some earlier n-gram starts with those n - 1.
    """
    N, t = history.shape
    banned = torch.zeros(N, vocab_size, device=history.device)
    if t < n:                                                      # no complete n-gram yet
        return banned.bool()
    grams = history.unfold(1, n, 1)                                # (N, t - n + 1, n)
    suffix = history[:, t - n + 1:]                                # (N, n - 1)
    match = (grams[:, :, :-1] == suffix[:, None, :]).all(dim=-1)   # (N, t - n + 1)
    # scatter_add, not scatter: the same token may follow several matching prefixes
    return banned.scatter_add_(1, grams[:, :, -1], match.to(banned.dtype)) > 0


def _mask(log_probs: Tensor, history: Tensor, t: int, eos: int, min_len: int,
          no_repeat_ngram: int) -> Tensor:
    """log_probs (N, V) with eos forbidden before min_len and repeated n-grams forbidden."""
    if t < min_len:
        log_probs = forbid_eos(log_probs, eos)
    if no_repeat_ngram > 0:
        banned = banned_ngrams(history.flatten(0, 1), no_repeat_ngram, log_probs.shape[1])
        log_probs = log_probs.masked_fill(banned, float("-inf"))
    return log_probs


def _set_aside(finalists: list[Finalists], history: Tensor, top: Tensor, beam: Tensor,
               token: Tensor, eos: int) -> None:
    """Hand each finite eos candidate among the first K to its sentence's finalists.

    top, beam, token (B, 2K): candidate scores, source beams and tokens, best first.
    history (B, K, t): the live beams' tokens.
    """
    K = history.shape[1]
    finished = (token[:, :K] == eos) & top[:, :K].isfinite()
    sentence, rank = finished.nonzero(as_tuple=True)
    prefixes = history[sentence, beam[sentence, rank]].tolist()
    for b, prefix, log_prob in zip(sentence.tolist(), prefixes, top[sentence, rank].tolist()):
        finalists[b].add(prefix + [eos], log_prob)


def _set_aside_unfinished(finalists: list[Finalists], history: Tensor, scores: Tensor) -> None:
    """Hand the live beams that reached max_len without eos to the finalists."""
    for b, (beams, log_probs) in enumerate(zip(history.tolist(), scores.tolist())):
        for tokens, log_prob in zip(beams, log_probs):
            if log_prob > float("-inf"):
                finalists[b].add(tokens, log_prob)


def _select(state: Any, rows: Tensor, static: Collection[str],
            sentences: Tensor | None) -> Any:
    """``select_rows(state, rows)``, except for the ``static`` entries of a dict state (the
    same for every beam of a sentence): those take ``sentences`` (the first row of each kept
    sentence, K times), or stay as they are when it is None (no sentence left the batch)."""
    if not static:
        return select_rows(state, rows)
    out = select_rows({k: v for k, v in state.items() if k not in static}, rows)
    same = {k: state[k] for k in static if k in state}
    out.update(same if sentences is None else select_rows(same, sentences))
    return out


STOPS = ("exact", "top")


def _check(beam_size: int, max_len: int, min_len: int, penalty: str, no_repeat_ngram: int,
           n_best: int, stop: str) -> None:
    for name, value, low in (("beam_size", beam_size, 1), ("max_len", max_len, 1),
                             ("min_len", min_len, 0), ("no_repeat_ngram", no_repeat_ngram, 0),
                             ("n_best", n_best, 1)):
        check_at_least(name, value, low)
    if penalty not in LENGTH_PENALTIES:
        raise ValueError(f"penalty must be one of {sorted(LENGTH_PENALTIES)}, got {penalty!r}")
    if stop not in STOPS:
        raise ValueError(f"stop must be one of {list(STOPS)}, got {stop!r}")


def beam_search(step: Step, state: Any, bos: int | Tensor, eos: int, beam_size: int,
                max_len: int, *, min_len: int = 0, length_penalty: float = 0.0,
                penalty: str = "gnmt", no_repeat_ngram: int = 0, n_best: int = 1,
                stop: str = "exact", static: Collection[str] = ()) -> list[list[Hypothesis]]:
    """Beam search for each of the B sentences in ``state`` (B as in ``start_tokens``).

    ``min_len``: eos is forbidden before min_len tokens. ``no_repeat_ngram`` = n > 0: a token
    that would complete an n-gram already in the hypothesis is forbidden. A sentence stops as
    ``stop`` says (module docstring), the search when every sentence has stopped or max_len
    is reached; beams alive at max_len compete as hypotheses without eos. ``static``: keys of
    a dict ``state`` whose tensors are the same for every beam of a sentence (an encoder's
    memory, say); they are reordered only when sentences leave the batch, not at every step.

    Returns, per sentence, up to ``n_best`` distinct hypotheses, best ``score`` first.
    """
    _check(beam_size, max_len, min_len, penalty, no_repeat_ngram, n_best, stop)
    K = beam_size
    tokens = start_tokens(bos, state).repeat_interleave(K)        # (N,)
    B, device = tokens.shape[0] // K, tokens.device
    state = select_rows(state, torch.arange(B, device=device).repeat_interleave(K))
    # Only beam 0 starts live, or the K copies of bos would yield K copies of each hypothesis.
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0
    history = torch.zeros(B, K, 0, dtype=torch.long, device=device)
    finalists = [Finalists(n_best, length_penalty, penalty) for _ in range(B)]
    live = finalists  # the finalists of the sentences still searched, in row order
    for t in range(max_len):
        log_probs, state = step(tokens, state)                     # (N, V)
        log_probs = _mask(log_probs, history, t, eos, min_len, no_repeat_ngram)
        # a sentence's 2K best candidates are among each beam's 2K best tokens: rank those
        # (N, 2K) instead of all K * V, and add the beam scores to them only
        row_top, row_token = log_probs.topk(min(2 * K, log_probs.shape[1]), dim=1)
        C = row_top.shape[1]
        candidates = (scores.view(-1, 1) + row_top).view(len(live), K * C)  # dtype promoted
        top, flat = candidates.topk(min(2 * K, K * C), dim=1)     # (B, 2K), best first
        beam, token = flat // C, row_token.view(len(live), K * C).gather(1, flat)
        top_ends = (token[:, 0] == eos) & top[:, 0].isfinite()    # for stop="top"
        _set_aside(live, history, top, beam, token, eos)
        scores, pick = top.masked_fill(token == eos, float("-inf")).topk(K, dim=1)  # (B, K)
        beam, token = beam.gather(1, pick), token.gather(1, pick)
        history = torch.cat([history.gather(1, beam[..., None].expand(-1, -1, t)),
                             token[..., None]], dim=2)             # (B, K, t + 1)
        if t + 1 == max_len:
            _set_aside_unfinished(live, history, scores)
            break
        if stop == "exact":
            going = [i for i, (f, s) in enumerate(zip(live, scores[:, 0].tolist()))
                     if f.can_improve(s, t + 1, max_len)]
        else:
            going = [i for i, (f, e, s) in enumerate(zip(live, top_ends.tolist(),
                                                         scores[:, 0].tolist()))
                     if s > float("-inf") and not (e and len(f.kept) >= n_best)]
        if not going:
            break
        # a stopped sentence leaves the batch: its rows cost nothing from here on
        keep = torch.tensor(going, device=device)
        sentences = (keep * K).repeat_interleave(K) if len(going) < len(live) else None
        live = [live[i] for i in going]
        scores, beam, token, history = scores[keep], beam[keep], token[keep], history[keep]
        rows = (keep[:, None] * K + beam).flatten()
        state, tokens = _select(state, rows, static, sentences), token.flatten()
    return [f.kept for f in finalists]
