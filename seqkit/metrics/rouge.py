"""ROUGE-1/2/L F1 with Google's rouge-score package, under SciTLDR's multi-reference protocol
(Cachola et al. 2020): score the summary against each reference, keep the reference that gives
the best ROUGE-1, average over documents. rouge-score lower-cases and drops non-alphanumeric
characters. It does not stem, as SciTLDR's own evaluation (ROUGE-1.5.5 without ``-m``) and the
figures published with it do not; ``stemmer=True`` turns on rouge-score's Porter stemmer,
whose higher scores are not comparable with those. Scores are percentages.

Also the two reference points every summarizer is read against: Lead-1 (the first source
sentence) and the extractive oracle (the source sentence that scores best).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs each scorer it builds


class MultiRefRouge:
    def __init__(self, stemmer: bool = False) -> None:
        from rouge_score.rouge_scorer import RougeScorer

        self.stemmer = stemmer
        self.scorer = RougeScorer(list(ROUGE_TYPES), use_stemmer=stemmer)

    def best(self, summary: str, references: Sequence[str]) -> dict[str, float]:
        """F1 of each ROUGE type against the reference with the best ROUGE-1 F1 (the first of
        equals)."""
        if not references:
            raise ValueError(f"no reference for the summary {summary[:60]!r}")
        scores = [self.scorer.score(ref, summary) for ref in references]
        top = max(scores, key=lambda s: s["rouge1"].fmeasure)
        return {k: top[k].fmeasure for k in ROUGE_TYPES}

    def corpus(self, summaries: Sequence[str],
               references: Sequence[Sequence[str]]) -> dict[str, float]:
        """Mean over documents of ``best``, in percent."""
        if len(summaries) != len(references) or not summaries:
            raise ValueError(f"{len(summaries)} summaries for {len(references)} reference sets")
        rows = [self.best(s, refs) for s, refs in zip(summaries, references)]
        return {k: 100 * sum(r[k] for r in rows) / len(rows) for k in ROUGE_TYPES}

    def oracle(self, sentences: Sequence[str], references: Sequence[str]) -> str:
        """The source sentence with the best ROUGE-1 against the references."""
        return max(sentences, key=lambda s: self.best(s, references)["rouge1"])

    def baselines(self, documents: Sequence[Sequence[str]],
                  references: Sequence[Sequence[str]]) -> dict[str, dict[str, float]]:
        """Lead-1 and oracle scores of documents given as lists of sentences."""
        return {"lead1": self.corpus([d[0] for d in documents], references),
                "oracle": self.corpus([self.oracle(d, r) for d, r in zip(documents, references)],
                                      references)}
