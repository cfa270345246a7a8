"""Span extraction and entity-level scores against seqeval's default (conlleval) mode."""
import random

import pytest
import torch

from seqkit.data.conll import convert_tags
from seqkit.metrics.spans import (SCHEMES, SpanF1, entities, span_scores, split_tag,
                                  transition_allowed)

pytest.importorskip("seqeval")
from seqeval.metrics import (classification_report, f1_score,  # noqa: E402
                             precision_score, recall_score)
from seqeval.metrics.sequence_labeling import get_entities  # noqa: E402

TYPES = ("PER", "LOC", "creative-work")  # a type with a hyphen, as in WNUT-17
# Ill-formed on purpose: I- after O, E- without B-, type switches, B- left open, E- after S-
ODD = [["O", "I-PER", "I-PER", "O"], ["B-PER", "I-LOC", "E-LOC"], ["E-PER", "E-PER"],
       ["B-PER"], ["S-PER", "E-PER", "I-PER"], ["I-LOC", "B-LOC", "I-LOC", "I-PER"],
       ["B-PER", "S-PER", "I-PER", "O", "E-LOC"], ["I-creative-work", "E-creative-work"]]


def all_tags(scheme):
    return ["O"] + [f"{p}-{t}" for t in TYPES for p in SCHEMES[scheme]]


def seqeval_spans(tags):
    return [(t, start, end + 1) for t, start, end in get_entities(list(tags))]


def random_corpus(rng, scheme, size=20):
    """(gold, predicted) tag sequences: gold random or well formed, predictions partly
    copied from gold so there are hits, partly noise."""
    tags = all_tags(scheme)
    true, pred = [], []
    for _ in range(size):
        seq = [rng.choice(tags) for _ in range(rng.randint(0, 10))]
        if rng.random() < 0.5:
            seq = convert_tags(seq, scheme, scheme)  # the same spans, well formed
        guess = [t if rng.random() < 0.7 else rng.choice(tags) for t in seq]
        true.append(seq)
        pred.append(guess)
    return true, pred


def assert_matches_seqeval(scores, true, pred):
    report = classification_report(true, pred, output_dict=True, zero_division=0)
    overall = report.pop("micro avg")
    for avg in ("macro avg", "weighted avg"):
        report.pop(avg)
    assert sorted(scores["per_type"]) == sorted(report)
    for name, want in [("overall", overall), *report.items()]:
        got = scores if name == "overall" else scores["per_type"][name]
        assert got["precision"] == pytest.approx(want["precision"], abs=1e-9), name
        assert got["recall"] == pytest.approx(want["recall"], abs=1e-9), name
        assert got["f1"] == pytest.approx(want["f1-score"], abs=1e-9), name
        assert got["support"] == want["support"], name
    if overall["support"] or any(map(any, pred)):  # seqeval's averages need some entity
        assert scores["precision"] == pytest.approx(precision_score(true, pred), abs=1e-9)
        assert scores["recall"] == pytest.approx(recall_score(true, pred), abs=1e-9)
        assert scores["f1"] == pytest.approx(f1_score(true, pred), abs=1e-9)


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_entities_match_seqeval_on_random_sequences(scheme):
    rng = random.Random(scheme)
    tags = all_tags(scheme)
    for _ in range(400):
        seq = [rng.choice(tags) for _ in range(rng.randint(0, 10))]
        assert entities(seq, scheme) == seqeval_spans(seq), seq


def test_entities_match_seqeval_on_ill_formed_sequences():
    for seq in ODD:
        assert entities(seq, "IOBES") == seqeval_spans(seq), seq


def test_entities_read_conlleval_style():
    assert entities(["O", "I-PER", "I-PER", "B-PER", "I-LOC"], "IOB1") == [
        ("PER", 1, 3), ("PER", 3, 4), ("LOC", 4, 5)]
    assert entities(["B-PER", "E-PER", "S-PER", "I-PER", "E-PER"], "IOBES") == [
        ("PER", 0, 2), ("PER", 2, 3), ("PER", 3, 5)]
    assert entities(["S-PER"], "IOBES") == [("PER", 0, 1)]
    assert entities(["B-creative-work", "I-creative-work"], "IOB2") == [("creative-work", 0, 2)]
    assert entities([], "IOB2") == [] and entities(["O", "O"], "IOB1") == []


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_span_scores_match_seqeval_on_random_corpora(scheme):
    rng = random.Random(scheme)
    for _ in range(20):
        true, pred = random_corpus(rng, scheme)
        assert_matches_seqeval(span_scores(true, pred, scheme), true, pred)


def test_span_scores_on_edge_cases():
    flipped = [seq[::-1] for seq in ODD]
    assert_matches_seqeval(span_scores(ODD, flipped, "IOBES"), ODD, flipped)
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "per_type": {}}
    assert span_scores([["O", "O"]], [["O", "O"]], "IOB2") == zero
    assert span_scores([], [], "IOB2") == zero
    assert span_scores([[]], [[]], "IOBES") == zero
    one = span_scores([["S-PER"]], [["S-PER"]], "IOBES")
    assert (one["f1"], one["per_type"]["PER"]["support"]) == (1.0, 1)
    missed = span_scores([["B-PER"]], [["O"]], "IOB2")
    assert (missed["precision"], missed["recall"], missed["support"]) == (0.0, 0.0, 1)
    wrong_type = span_scores([["B-PER"]], [["B-LOC"]], "IOB2")["per_type"]
    assert wrong_type["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_span_scores_reject_mismatched_input():
    with pytest.raises(ValueError, match="2 gold sequences but 1 predicted"):
        span_scores([["O"], ["O"]], [["O"]], "IOB2")
    with pytest.raises(ValueError, match="sequence 0: 2 gold tags but 1 predicted"):
        span_scores([["O", "O"]], [["O"]], "IOB2")
    with pytest.raises(ValueError, match="'S-PER'"):
        span_scores([["S-PER"]], [["O"]], "IOB2")


def test_split_tag_and_schemes():
    assert split_tag("B-creative-work", "IOB2") == ("B", "creative-work")
    assert split_tag("O", "IOB1") == ("O", None)
    for bad in ("E-PER", "B-", "PER", "o", "B_PER"):
        with pytest.raises(ValueError, match=repr(bad)):
            split_tag(bad, "IOB2")
    with pytest.raises(ValueError, match="unknown tag scheme 'BIO'"):
        split_tag("O", "BIO")


def test_transition_rules():
    ok = transition_allowed
    assert not ok("O", "I-PER", "IOB2") and ok("B-PER", "I-PER", "IOB2")
    assert not ok("I-LOC", "I-PER", "IOB2") and ok("O", "B-PER", "IOB2")
    assert not ok("O", "B-PER", "IOB1") and ok("I-PER", "B-PER", "IOB1")
    assert ok("O", "I-PER", "IOB1") and ok("I-LOC", "I-PER", "IOB1")
    assert not ok("B-PER", "O", "IOBES") and not ok("I-PER", "S-PER", "IOBES")
    assert not ok("B-PER", "E-LOC", "IOBES") and ok("B-PER", "E-PER", "IOBES")
    assert not ok("E-PER", "I-PER", "IOBES") and ok("S-PER", "B-LOC", "IOBES")


def padded(rows, names):
    """(B, T) id tensor (padding -1) and lengths (B,) from tag-name rows."""
    index = {t: i for i, t in enumerate(names)}
    width = max([len(r) for r in rows] + [1])
    ids = torch.full((len(rows), width), -1)
    for b, row in enumerate(rows):
        ids[b, :len(row)] = torch.tensor([index[t] for t in row], dtype=torch.long)
    return ids, torch.tensor([len(r) for r in rows])


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_span_f1_metric_equals_span_scores(scheme):
    names = all_tags(scheme)
    index = {t: i for i, t in enumerate(names)}
    true, pred = random_corpus(random.Random(1), scheme, size=40)
    metric = SpanF1(names, scheme)
    for lo in range(0, 40, 8):  # gold as a padded tensor, predictions as id lists
        gold, lengths = padded(true[lo:lo + 8], names)
        metric.update([[index[t] for t in row] for row in pred[lo:lo + 8]], gold, lengths)
    got, want = metric.compute(), span_scores(true, pred, scheme)
    for key in ("precision", "recall", "f1", "support"):
        assert got[key].item() == pytest.approx(want[key], abs=1e-6)
    assert sorted(got["per_type"]) == sorted(TYPES)  # every type of tag_names
    for name, scores in got["per_type"].items():
        expected = want["per_type"].get(name, {"precision": 0, "recall": 0, "f1": 0,
                                               "support": 0})
        for key, value in scores.items():
            assert value.item() == pytest.approx(expected[key], abs=1e-6), (name, key)


def test_span_f1_states_sum_across_processes():
    names = all_tags("IOB2")
    true, pred = random_corpus(random.Random(2), "IOB2", size=16)
    whole, left, right = (SpanF1(names, "IOB2") for _ in range(3))
    for metric, rows in ((left, slice(0, 8)), (right, slice(8, 16)), (whole, slice(0, 16))):
        gold, lengths = padded(true[rows], names)
        guess, _ = padded(pred[rows], names)
        metric.update(guess, gold, lengths)
    states = ("correct", "predicted", "gold")
    remote = {id(getattr(left, name)): getattr(right, name) for name in states}
    # what DDP's sync does: gather each state from both processes, then reduce
    left.sync(dist_sync_fn=lambda state, group=None: [state, remote[id(state)]],
              distributed_available=lambda: True)
    assert all(torch.equal(getattr(left, name), getattr(whole, name)) for name in states)
    left.unsync()
    left.merge_state(right)  # what a DDP sync does with the two processes' states
    assert left.compute()["f1"] == whole.compute()["f1"]
    whole.reset()
    assert whole.correct.sum() == whole.predicted.sum() == whole.gold.sum() == 0


def test_span_f1_rejects_tags_outside_the_scheme_and_uncut_padding():
    with pytest.raises(ValueError, match="'S-PER'"):
        SpanF1(["O", "B-PER", "S-PER"], "IOB2")
    metric = SpanF1(["O", "B-PER", "I-PER"], "IOB2")
    padded_ids = torch.tensor([[1, 2, -1]])
    with pytest.raises(ValueError, match="tag id -1 is outside 0..2; pass lengths"):
        metric.update(padded_ids, padded_ids)
    metric.update(padded_ids, padded_ids, torch.tensor([2]))
    assert metric.compute()["f1"] == 1
