"""Tag schemes, the entity spans a tag sequence encodes, and span-level precision/recall/F1.

A tag is ``O`` or ``PREFIX-TYPE`` (the type may itself hold hyphens: ``B-creative-work``).
The schemes differ in their prefixes and in which sequences are well formed:

- IOB1: I- inside any entity; B- only opens an entity right after one of the same type.
- IOB2: B- opens every entity, I- continues it.
- IOBES: S- is a one-token entity; B-, I-..., E- a longer one.

Spans are read the way conlleval and seqeval's default mode read them, for any of the three
schemes and for ill-formed sequences too: a token continues the open entity exactly when it
is I- or E- of the same type right after a B- or I-; every other non-O token opens a new one.
So ``O I-PER`` is an entity, ``B-PER I-LOC`` two, and ``E-PER I-PER`` two.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

SCHEMES = {"IOB1": ("B", "I"), "IOB2": ("B", "I"), "IOBES": ("B", "I", "E", "S")}
Span = tuple[str, int, int]  # (type, start, end): tokens[start:end] is the entity


def check_scheme(scheme: str) -> str:
    """``scheme`` itself, or ValueError if it is not one of SCHEMES."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    return scheme


def split_tag(tag: str, scheme: str) -> tuple[str, str | None]:
    """("O", None) for ``O``, else (prefix, type); ValueError for a tag the scheme lacks."""
    prefixes = SCHEMES[check_scheme(scheme)]
    if tag == "O":
        return "O", None
    prefix, dash, type_ = tag.partition("-")
    if not dash or not type_ or prefix not in prefixes:
        raise ValueError(f"tag {tag!r} is neither O nor a type after one of "
                         f"{', '.join(p + '-' for p in prefixes)} ({scheme})")
    return prefix, type_


def transition_allowed(prev: str, tag: str, scheme: str) -> bool:
    """Whether ``tag`` may follow ``prev`` in a well-formed ``scheme`` sequence.

    A sentence starts and ends as if next to ``O``: ``transition_allowed("O", tag)`` says
    whether ``tag`` may start one, ``transition_allowed(tag, "O")`` whether it may end one.
    """
    (p, p_type), (c, c_type) = split_tag(prev, scheme), split_tag(tag, scheme)
    inside = p in ("B", "I") and p_type == c_type  # prev belongs to an entity of tag's type
    if scheme == "IOB1":
        return c != "B" or inside
    if scheme == "IOB2":
        return c != "I" or inside
    # IOBES: after B- or I- the entity must go on, and only B- or I- can be gone on from
    if p in ("B", "I"):
        return c in ("I", "E") and p_type == c_type
    return c not in ("I", "E")


def entities(tags: Sequence[str], scheme: str) -> list[Span]:
    """The (type, start, end) spans of a tag sequence, in order; ``end`` is exclusive.

    Ill-formed sequences are read as conlleval reads them (see the module docstring); tags
    outside the scheme raise ValueError.
    """
    spans: list[Span] = []
    open_type, start, prev = None, 0, "O"  # the open entity's type; prev tag's prefix
    for i, tag in enumerate(tags):
        prefix, type_ = split_tag(tag, scheme)
        continues = prefix in ("I", "E") and prev in ("B", "I") and type_ == open_type
        if open_type is not None and not continues:
            spans.append((open_type, start, i))
            open_type = None
        if prefix != "O" and not continues:
            open_type, start = type_, i
        prev = prefix
    if open_type is not None:
        spans.append((open_type, start, len(tags)))
    return spans


def _score_dict(types: Sequence[str], correct: Sequence[int], predicted: Sequence[int],
                gold: Sequence[int]) -> dict:
    """Micro precision, recall, F1 and support (gold count) overall and per type, from
    per-type counts; a ratio with a zero denominator is 0, as in seqeval."""
    def prf(tp: int, n_pred: int, n_gold: int) -> dict:
        return {"precision": tp / n_pred if n_pred else 0.0,
                "recall": tp / n_gold if n_gold else 0.0,
                # 2PR/(P+R) with the counts put in: exact, and 0 when tp is 0
                "f1": 2 * tp / (n_pred + n_gold) if tp else 0.0,
                "support": n_gold}
    scores = prf(sum(correct), sum(predicted), sum(gold))
    scores["per_type"] = {t: prf(*counts) for t, *counts in zip(types, correct, predicted, gold)}
    return scores


def _count(true: list[Span], pred: list[Span], correct: Counter, predicted: Counter,
           gold: Counter) -> None:
    """Add one sequence's per-type counts; spans are unique within a sequence."""
    gold.update(t for t, _, _ in true)
    predicted.update(t for t, _, _ in pred)
    correct.update(t for t, _, _ in set(true) & set(pred))


def span_scores(true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]],
                scheme: str) -> dict:
    """Entity-level scores of predicted against gold tag sequences, as seqeval computes them.

    Returns {"precision", "recall", "f1", "support", "per_type": {type: {"precision",
    "recall", "f1", "support"}}}: micro-averaged over entities, a predicted entity counting
    as correct only with the gold type and both boundaries. Per-type entries cover every type
    that is gold or predicted somewhere; support is the number of gold entities.
    """
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(f"{len(true_seqs)} gold sequences but {len(pred_seqs)} predicted")
    correct, predicted, gold = Counter(), Counter(), Counter()
    for i, (true, pred) in enumerate(zip(true_seqs, pred_seqs)):
        if len(true) != len(pred):
            raise ValueError(f"sequence {i}: {len(true)} gold tags but {len(pred)} predicted")
        _count(entities(true, scheme), entities(pred, scheme), correct, predicted, gold)
    types = sorted(predicted.keys() | gold.keys())
    return _score_dict(types, *([c[t] for t in types] for c in (correct, predicted, gold)))


def _rows(seqs: Tensor | Sequence[Sequence[int]], lengths: list[int] | None) -> list[list[int]]:
    """Tag-id rows cut to their lengths, from a padded (B, T) tensor or a list of lists."""
    rows = seqs.tolist() if isinstance(seqs, Tensor) else [list(r) for r in seqs]
    return rows if lengths is None else [r[:n] for r, n in zip(rows, lengths)]


class SpanF1(Metric):
    """Entity-level precision, recall and F1 (seqeval's default mode) over tag-id sequences.

    States are per-type counts of correct, predicted and gold entities, summed across
    processes, so the scores are exact under DDP. ``compute()`` returns the dict of
    ``span_scores`` with tensors for the numbers, and an entry for every type in
    ``tag_names`` (0 for a type never seen).
    """
    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, tag_names: Sequence[str], scheme: str, **kwargs) -> None:
        super().__init__(**kwargs)
        for tag in tag_names:  # fail at construction, not at the first validation batch
            split_tag(tag, scheme)
        self.tag_names, self.scheme = list(tag_names), scheme
        self._names = dict(enumerate(tag_names))
        self.types = sorted({split_tag(t, scheme)[1] for t in tag_names} - {None})
        for name in ("correct", "predicted", "gold"):
            self.add_state(name, torch.zeros(len(self.types), dtype=torch.long),
                           dist_reduce_fx="sum")

    def update(self, preds: Tensor | Sequence[Sequence[int]],
               target: Tensor | Sequence[Sequence[int]], lengths: Tensor | None = None) -> None:
        """Count one batch. ``preds`` and ``target``: (B, T) padded tag-id tensors or lists of
        id lists (e.g. ``CRF.decode``'s); ``lengths`` (B,) cuts both, else rows are whole."""
        n = lengths.tolist() if isinstance(lengths, Tensor) else lengths
        pred_rows, true_rows = _rows(preds, n), _rows(target, n)
        if len(pred_rows) != len(true_rows):
            raise ValueError(f"{len(pred_rows)} predicted sequences but {len(true_rows)} gold")
        correct, predicted, gold = Counter(), Counter(), Counter()
        for pred, true in zip(pred_rows, true_rows):
            if len(pred) != len(true):
                raise ValueError(f"a predicted sequence has {len(pred)} tags, its gold one "
                                 f"{len(true)}")
            _count(self._spans(true), self._spans(pred), correct, predicted, gold)
        for state, counts in ((self.correct, correct), (self.predicted, predicted),
                              (self.gold, gold)):
            state += torch.tensor([counts[t] for t in self.types], device=state.device)

    def _spans(self, ids: list[int]) -> list[Span]:
        try:  # a dict, not the list: padding such as -1 must not wrap around to a tag
            tags = [self._names[i] for i in ids]
        except KeyError as e:
            raise ValueError(f"tag id {e.args[0]} is outside 0..{len(self._names) - 1}; "
                             "pass lengths to cut padding off") from None
        return entities(tags, self.scheme)

    def compute(self) -> dict:
        counts = (self.correct.tolist(), self.predicted.tolist(), self.gold.tolist())
        return _tensors(_score_dict(self.types, *counts), self.correct.device)


def _tensors(scores: dict, device: torch.device) -> dict:
    """The same nested dict with every number a 0-dim tensor (what Lightning logs)."""
    return {k: _tensors(v, device) if isinstance(v, dict) else torch.tensor(v, device=device)
            for k, v in scores.items()}


__all__ = ["SCHEMES", "Span", "SpanF1", "check_scheme", "entities", "span_scores", "split_tag",
           "transition_allowed"]
