"""Summarization data: SciTLDR-A (abstract -> TLDR, several reference TLDRs per paper in dev
and test) and the user's (source, summary) pairs as TSV or JSONL.

Text is split into lower-cased words (``Words``): a pointer-generator copies source words, and
with ``copy: true`` each example carries its source in the extended vocabulary and a target
whose unknown words, when the source has them, point there. Sources are truncated to
``max_src_len`` words.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import torch

from .cache import dataset_file
from .classification import pad
from .parallel import (StoredPairs, TranslationData, iter_user_pairs, pad_sources, pad_targets,
                       read_user_pairs, split_files)
from .store import TokenStore
from .subword import UNK
from .text import jsonl_objects
from .words import Words

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")


class Document(NamedTuple):
    sentences: list[str]   # the source, sentence by sentence
    summaries: list[str]   # one or more references


def split_sentences(text: str) -> list[str]:
    """Sentences of a plain-text source: split after . ! ? before a capital or digit."""
    return [s for s in SENTENCE_END.split(text.strip()) if s]


def read_scitldr(path) -> list[Document]:
    """SciTLDR JSON lines: ``source`` a list of sentences, ``target`` a list of TLDRs."""
    docs = []
    for lineno, row in jsonl_objects(path, ("source", "target")):
        for key in ("source", "target"):
            if not isinstance(row[key], list) or not all(isinstance(s, str) for s in row[key]):
                raise ValueError(f"{path}:{lineno}: {key!r} must be a list of strings, got "
                                 f"{str(row[key])[:80]!r}")
        sentences = [s.strip() for s in row["source"] if s.strip()]
        summaries = [t.strip() for t in row["target"] if t.strip()]
        if not sentences or not summaries:
            raise ValueError(f"{path}:{lineno}: paper {row.get('paper_id', '?')!r} has an "
                             "empty source or no summary")
        docs.append(Document(sentences, summaries))
    return docs


def load_scitldr(root=None) -> dict[str, list[Document]]:
    """SciTLDR-A: train 1,992 / dev 619 / test 618 papers."""
    return {split: read_scitldr(dataset_file("scitldr", f"SciTLDR-A/{name}.jsonl", root))
            for split, name in (("train", "train"), ("val", "dev"), ("test", "test"))}


class Item(NamedTuple):
    index: int
    src: list[int]          # source ids, unknown words as <unk>
    tgt: list[int]          # the first reference's ids, as the model should produce them
    refs: list[str]         # every reference, raw (ROUGE's input)
    src_ext: list[int]      # source ids in the extended vocabulary
    oovs: list[str]         # the source's unknown words, by extended id - vocabulary size


class StoredDocuments(StoredPairs):
    """A summarization store's examples as training items: the source's unknown words are
    not stored, only how many there are (extended ids from ``vocab_size`` up), which is
    what training needs of them."""

    def __init__(self, store: TokenStore, vocab_size: int) -> None:
        super().__init__(store)
        self.vocab_size = vocab_size

    def __getitem__(self, i: int) -> Item:
        src, tgt, src_ext = self.store[i]
        unknown = max(max(src_ext) - self.vocab_size + 1, 0)
        return Item(i, src, tgt, [], src_ext, ["<unk>"] * unknown)


class SummarizationData(TranslationData):
    """SciTLDR-A (``dataset: scitldr``) or ``files`` ({train, val, test}: TSV or JSONL with
    ``src_column`` and ``tgt_column``; one reference each).

    Batches are ``TranslationData``'s (``ref`` holds each document's list of references) plus,
    with ``copy``, ``src_ext`` (B, S), ``n_ext`` (the batch's most unknown source words) and
    ``oovs``, and ``tgt_out`` in the extended vocabulary. Training uses every reference of a
    document as a pair; evaluation scores one summary per document.
    """

    DATASETS = ("scitldr",)
    task, plain = "summarization", ("max_src_len",)
    predictor = "Transducer"  # the seqkit.inference class a checkpoint builds

    def __init__(self, dataset: str | None = "scitldr", files: dict | None = None,
                 src_column: str | int = "source", tgt_column: str | int = "target",
                 vocab_size: int = 20000, min_freq: int = 2, copy: bool = True,
                 max_src_len: int = 300, max_len: int | None = 60, batch_size: int = 16,
                 num_workers: int = 0) -> None:
        super().__init__(dataset, files, src_column=src_column,
                         tgt_column=tgt_column, max_len=max_len, batch_size=batch_size,
                         num_workers=num_workers)
        self.vocab_options = {"max_size": vocab_size, "min_freq": min_freq}
        self.copy, self.max_src_len = copy, max_src_len
        self.documents: dict[str, list[Document]] = {}  # by split: the test's give lead-1

    def read_file(self, spec, split: str) -> list[Document]:
        return [Document(split_sentences(s), [t])
                for s, t in read_user_pairs(spec, *self.columns)]

    # -- the training split in a token store: documents x summaries ---------------------------
    def read(self, split: str) -> list[Document]:
        if self.dataset is not None:  # one split, not all three
            name = {"val": "dev", "test": "test"}[split]
            return read_scitldr(dataset_file("scitldr", f"SciTLDR-A/{name}.jsonl"))
        return self.read_file(self.files[split], split)

    def _train_source(self) -> tuple[list[Path], object]:
        if self.files is not None:
            return split_files(self.files["train"]), self.files["train"]
        path = dataset_file("scitldr", "SciTLDR-A/train.jsonl")
        return [path], path

    def _store_options(self) -> dict:
        return {**self.vocab_options, "copy": self.copy, "max_src_len": self.max_src_len,
                "max_len": self.max_len}

    def _documents(self, source) -> Iterator[Document]:
        if self.files is None:
            return iter(read_scitldr(source))
        return (Document(split_sentences(s), [t])
                for s, t in iter_user_pairs(source, *self.columns))

    def _examples(self, source, counts: dict):
        """A word vocabulary counted on the stream, then one example per document and
        summary: source ids (unknown words as <unk>), target ids (with ``copy``, in the
        extended vocabulary) and the source's extended ids."""
        words = Words.learn((" ".join(d.sentences) for d in self._documents(source)),
                            (t for d in self._documents(source) for t in d.summaries),
                            **self.vocab_options)

        def examples():
            for doc in self._documents(source):
                counts["read"] += 1
                src_ext, oovs = words.extend(" ".join(doc.sentences), self.max_src_len)
                for summary in doc.summaries:
                    tgt = (words.extend_target(summary, oovs) if self.copy else
                           words.encode_tgt([summary])[0])
                    if self.max_len is None or len(tgt) + 1 <= self.max_len:
                        counts["kept"] += 1
                        yield words.known(src_ext) or [UNK], tgt, src_ext or [UNK]
        top = len(words.vocab) + (self.max_src_len or 2 ** 31)  # extended ids stay below
        return (("src", "tgt", "src_ext"), examples(),
                {"words.json": json.dumps(words.state_dict()).encode()}, top)

    def _from_store(self, store: TokenStore):
        words = Words.from_state_dict(json.loads((store.folder / "words.json").read_text()))
        return words, StoredDocuments(store, len(words.vocab))

    def fit(self, train: list[Document]) -> None:
        self.tokenizer = Words.learn([" ".join(d.sentences) for d in train],
                                     [s for d in train for s in d.summaries],
                                     **self.vocab_options)

    def longest(self, item: Item) -> int:
        return len(item.tgt) + 1  # sources are truncated instead

    def to_items(self, docs: list[Document], split: str) -> list[Item]:
        self.documents[split] = docs
        words, items = self.tokenizer, []
        for i, doc in enumerate(docs):
            src_ext, oovs = words.extend(" ".join(doc.sentences), self.max_src_len)
            src = words.known(src_ext)
            for summary in doc.summaries if split == "train" else doc.summaries[:1]:
                tgt = (words.extend_target(summary, oovs) if self.copy else
                       words.encode_tgt([summary])[0])
                items.append(Item(i, src or [UNK], tgt, doc.summaries, src_ext or [UNK], oovs))
        return items

    def collate(self, items: list[Item]) -> dict:
        batch = {**pad_sources([it.src for it in items]), **pad_targets([it.tgt for it in items]),
                 "index": torch.tensor([it.index for it in items]),
                 "ref": [it.refs for it in items]}
        if self.copy:
            batch.update(src_ext=pad([it.src_ext for it in items], 0)["tokens"],
                         n_ext=max(len(it.oovs) for it in items),
                         oovs=[it.oovs for it in items])
        return batch

    def artifacts(self) -> dict:
        return {"task": self.task, "tokenizer": self.tokenizer.state_dict(),
                "max_src_len": self.max_src_len}
