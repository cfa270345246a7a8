"""Sentiment data for Lightning: the splits, the vocabulary built on train, padded batches."""
from __future__ import annotations

import torch

from .module import SplitDataModule
from .text import (Example, load_sentiment, read_user_sentiment, splitter, splitter_of, tokenize,
                   tokenizer_state)
from .vocab import Vocab


class SentimentData(SplitDataModule):
    """A standard dataset by name (``sst2``, ``sst5``, ``mr``) or your ``files`` (train, val,
    test: TSV with a header, or JSONL; test may be left out). Batches: ``tokens`` (B, T),
    ``lengths`` (B,), ``labels`` (B,)."""

    task, plain = "sentiment", ("labels", "lower")  # and tokenizer: see restore
    predictor = "Classifier"  # the seqkit.inference class a checkpoint builds

    def __init__(self, dataset: str | None = "sst2", files: dict | None = None,
                 text_column: str = "text", label_column: str = "label",
                 fold: int | None = None, seed: int = 0, batch_size: int = 64,
                 min_freq: int = 1, max_vocab: int | None = None, lower: bool = True,
                 tokenizer: str = "simple", num_workers: int = 0) -> None:
        super().__init__(dataset, files,
                         "give either dataset=<sst2|sst5|mr> or files={train, val, test}")
        self.fold, self.seed = fold, seed
        self.columns = (text_column, label_column)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.min_freq, self.max_vocab, self.lower = min_freq, max_vocab, lower
        self.tokenizer, self.splitter = tokenizer, splitter(tokenizer)  # a bad one fails here
        self.vocab: Vocab | None = None
        self.labels: list[str] = []

    def read_file(self, path, split: str) -> list[Example]:
        return read_user_sentiment(path, *self.columns)

    def read_all(self) -> dict[str, list[Example]]:
        return load_sentiment(self.dataset, fold=self.fold, seed=self.seed)

    def _cased(self, tokens: list[str]) -> list[str]:
        """A file's tokens as the model reads them, as ``encode_texts`` reads raw text in
        predict (``tokenizer``, ``lower``). The standard datasets' text is tokenized already,
        by the Penn Treebank's rules that ``simple`` applies to raw text: it is read as it
        is (SST-2 with the simple tokenizer would change 0.8% of its training texts, and its
        reported runs read it so)."""
        tokenizer = "whitespace" if self.dataset and self.splitter == "simple" else \
            self.splitter
        return tokenize(" ".join(tokens), self.lower, tokenizer)

    def fit(self, train: list[Example]) -> None:
        self.vocab = Vocab.build((self._cased(e.tokens) for e in train),
                                 min_freq=self.min_freq, max_size=self.max_vocab)
        self.labels = sorted({e.label for e in train}, key=_label_key)

    def restore(self, artifacts: dict) -> None:
        super().restore(artifacts)
        self.vocab = Vocab.from_state_dict(artifacts["vocab"])
        self.tokenizer = artifacts.get("tokenizer", "whitespace")  # what older ones used
        self.splitter = splitter_of(artifacts)

    def encode(self, examples: list[Example], split: str) -> list[tuple[list[int], int]]:
        index = {label: i for i, label in enumerate(self.labels)}
        unknown = sorted({e.label for e in examples} - index.keys())
        if unknown:
            where = self.files[split] if self.files else f"{self.dataset} {split} split"
            raise ValueError(f"{where}: label(s) {unknown} never occur in the training data "
                             f"(its labels: {self.labels})")
        return [(self.vocab.encode(self._cased(e.tokens)), index[e.label]) for e in examples]

    def length(self, item: tuple[list[int], int]) -> int:
        return len(item[0])

    def dims(self) -> dict[str, int]:
        return {"vocab_size": len(self.vocab), "num_classes": len(self.labels)}

    def artifacts(self) -> dict:
        """What predicting from a checkpoint needs: the vocabulary, label names, casing."""
        return {"task": self.task, "vocab": self.vocab.state_dict(), "labels": self.labels,
                "lower": self.lower, **tokenizer_state(self.tokenizer, self.splitter)}

    def collate(self, batch: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        return {**pad([ids for ids, _ in batch], self.vocab.pad_index),
                "labels": torch.tensor([label for _, label in batch])}


def _label_key(label: str):
    """Numeric labels in numeric order ("0" < "1" < ... < "10"), others alphabetically."""
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def pad(seqs: list[list[int]], pad_index: int) -> dict[str, torch.Tensor]:
    """Token ids -> ``tokens`` (B, T) padded with pad_index, ``lengths`` (B,); an empty
    sequence becomes one pad token so that every length is at least 1."""
    lengths = torch.tensor([max(len(s), 1) for s in seqs])
    tokens = torch.full((len(seqs), int(lengths.max())), pad_index)
    for row, ids in enumerate(seqs):
        tokens[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return {"tokens": tokens, "lengths": lengths}


def encode_texts(texts: list[str], vocab: Vocab, lower: bool,
                 tokenizer="whitespace") -> dict[str, torch.Tensor]:
    """Raw texts -> a padded batch, tokenized as at training time (for predict)."""
    return pad([vocab.encode(tokenize(t, lower, tokenizer)) for t in texts], vocab.pad_index)
