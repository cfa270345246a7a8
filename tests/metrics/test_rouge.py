"""ROUGE against rouge-score under the multi-reference (best reference) protocol, and the lead
and oracle baselines."""
import random

import pytest

from seqkit.metrics.rouge import MultiRefRouge


def test_rouge_equals_rouge_score_under_the_best_reference_protocol():
    from rouge_score import rouge_scorer

    rng = random.Random(0)
    vocab = "the a model network learns trains data loss fast new method we propose".split()
    docs = [([" ".join(rng.choices(vocab, k=rng.randint(3, 12)))
              for _ in range(rng.randint(1, 4))], " ".join(rng.choices(vocab, k=8)))
            for _ in range(40)]
    docs.append((["Exactly this."], "exactly THIS"))
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    expected = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for refs, hyp in docs:
        scores = [scorer.score(r, hyp) for r in refs]
        best = scores[max(range(len(refs)), key=lambda i: (scores[i]["rouge1"].fmeasure, -i))]
        for k in expected:
            expected[k] += 100 * best[k].fmeasure / len(docs)
    got = MultiRefRouge().corpus([h for _, h in docs], [r for r, _ in docs])
    assert got == pytest.approx(expected, abs=1e-9)


def test_lead_and_oracle_baselines():
    rouge = MultiRefRouge()
    docs = [["We study cats.", "We propose a new loss for training dogs."]]
    refs = [["a new loss for training dogs"]]
    scores = rouge.baselines(docs, refs)
    assert scores["oracle"]["rouge1"] == pytest.approx(100 * 2 * 6 / 6 / (6 / 8 + 1) * 6 / 8)
    assert scores["lead1"]["rouge1"] == 0.0
