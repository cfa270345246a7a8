"""ROUGE against rouge-score under the multi-reference (best reference) protocol, and the lead
and oracle baselines."""
import random

import pytest

from seqkit.metrics.rouge import MultiRefRouge


@pytest.mark.parametrize("stemmer", [False, True])
def test_rouge_equals_rouge_score_under_the_best_reference_protocol(stemmer):
    from rouge_score import rouge_scorer

    rng = random.Random(0)
    vocab = ("the a model models network networks learns learning trains training data loss fast "
             "new method methods we propose proposed").split()
    docs = [([" ".join(rng.choices(vocab, k=rng.randint(3, 12)))
              for _ in range(rng.randint(1, 4))], " ".join(rng.choices(vocab, k=8)))
            for _ in range(40)]
    docs.append((["Exactly this."], "exactly THIS"))
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=stemmer)
    expected = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for refs, hyp in docs:
        scores = [scorer.score(r, hyp) for r in refs]
        best = scores[max(range(len(refs)), key=lambda i: (scores[i]["rouge1"].fmeasure, -i))]
        for k in expected:
            expected[k] += 100 * best[k].fmeasure / len(docs)
    got = MultiRefRouge(stemmer).corpus([h for _, h in docs], [r for r, _ in docs])
    assert got == pytest.approx(expected, abs=1e-9)


def test_rouge_does_not_stem_by_default_as_scitldr_scores():
    refs, hyp = [["models learning to propose methods"]], ["model learns to proposed method"]
    assert MultiRefRouge().corpus(hyp, refs)["rouge1"] == pytest.approx(100 * 1 / 5)
    assert MultiRefRouge(stemmer=True).corpus(hyp, refs)["rouge1"] == pytest.approx(100.0)


def test_lead_and_oracle_baselines():
    rouge = MultiRefRouge()
    docs = [["We study cats.", "We propose a new loss for training dogs."]]
    refs = [["a new loss for training dogs"]]
    scores = rouge.baselines(docs, refs)
    assert scores["oracle"]["rouge1"] == pytest.approx(100 * 2 * 6 / 6 / (6 / 8 + 1) * 6 / 8)
    assert scores["lead1"]["rouge1"] == 0.0
