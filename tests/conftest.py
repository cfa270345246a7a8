"""Fixtures shared by the test files: tiny synthetic data, no network. Helpers that are not
fixtures are in helpers.py."""
import json
import os
import random

import pytest
import torch
from hypothesis import settings

from tests.helpers import SHARED_DATA

# property-based tests: a bounded number of inputs by default, many with
# --hypothesis-profile=slow
settings.register_profile("default", max_examples=40, deadline=None)
settings.register_profile("slow", max_examples=1000, deadline=None)
settings.load_profile("default")

if SHARED_DATA.is_dir():
    os.environ.setdefault("SEQKIT_DATA", str(SHARED_DATA))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


SENTIMENT_WORDS = {"1": ["good", "great", "fine", "superb"], "0": ["bad", "awful", "poor", "dull"]}


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """A separable sentiment set: the label is which word list the sentence draws from."""
    folder = tmp_path_factory.mktemp("tiny")
    gen = torch.Generator().manual_seed(0)
    files = {}
    for split, n in (("train", 64), ("val", 16), ("test", 16)):
        lines = ["text\tlabel"]
        for k in range(n):
            label = str(k % 2)
            picks = torch.randint(0, 4, (int(torch.randint(2, 7, (1,), generator=gen)),),
                                  generator=gen)
            lines.append(" ".join(["the", "film", "is"]
                                  + [SENTIMENT_WORDS[label][i] for i in picks]) + f"\t{label}")
        files[split] = folder / f"{split}.tsv"
        files[split].write_text("\n".join(lines) + "\n")
    return files


@pytest.fixture(autouse=True)
def derived_cache(tmp_path_factory, monkeypatch):
    """Sentencepiece models, token stores and parsed music are cached in SEQKIT_CACHE: keep
    the tests' out of ~/.cache (one folder for the session, so that a model is learnt once)."""
    monkeypatch.setenv("SEQKIT_CACHE", str(tmp_path_factory.getbasetemp() / "derived"))


TRANSLATIONS = {"eins": "one", "zwei": "two", "drei": "three", "vier": "four", "rot": "red",
                "blau": "blue", "haus": "house", "hund": "dog", "katze": "cat", "groß": "big"}


def _translation_pair(rng: random.Random) -> tuple[str, str]:
    """A word-for-word 'translation': the same order, each word looked up in TRANSLATIONS (no
    word twice, so that attention can align by content and learn in a few hundred steps)."""
    words = rng.sample(sorted(TRANSLATIONS), k=rng.randint(2, 5))
    return " ".join(words), " ".join(TRANSLATIONS[w] for w in words)


@pytest.fixture(scope="module")
def parallel_corpus(tmp_path_factory):
    """train: two aligned files; val: TSV with a header; test: JSONL (+ its references)."""
    folder, rng = tmp_path_factory.mktemp("parallel"), random.Random(0)
    pairs = {split: [_translation_pair(rng) for _ in range(n)]
             for split, n in (("train", 320), ("val", 24), ("test", 24))}
    (folder / "train.de").write_text("".join(s + "\n" for s, _ in pairs["train"]))
    (folder / "train.en").write_text("".join(t + "\n" for _, t in pairs["train"]))
    (folder / "val.tsv").write_text("tgt\tsrc\n" + "".join(f"{t}\t{s}\n" for s, t in pairs["val"]))
    (folder / "test.jsonl").write_text("".join(json.dumps({"src": s, "tgt": t}) + "\n"
                                               for s, t in pairs["test"]))
    (folder / "test.ref").write_text("".join(t + "\n" for _, t in pairs["test"]))
    return folder


NER_NAMES = {"PER": ["John", "Mary", "Smith", "Ahmed"], "LOC": ["Paris", "Berlin", "Kenya", "Ohio"]}
NER_FILLER = ["the", "man", "went", "to", "see", "a", "game", "in", "with", "."]


@pytest.fixture(scope="module")
def conll_files(tmp_path_factory):
    """Sentences of filler words with one or two names (PER or LOC), in IOB2 columns."""
    folder, rng = tmp_path_factory.mktemp("conll"), random.Random(0)
    files = {}
    for split, n in (("train", 96), ("val", 24), ("test", 24)):
        lines = []
        for _ in range(n):
            words = []  # filler, a name, filler, maybe another name: names never touch
            for k in range(rng.randint(1, 2)):
                kind = rng.choice(sorted(NER_NAMES))
                name = rng.sample(NER_NAMES[kind], rng.randint(1, 2))
                words += [(w, "O") for w in rng.sample(NER_FILLER, 2)]
                words += [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(name)]
            lines += [f"{w} X X {t}" for w, t in words + [(".", "O")]] + [""]
        files[split] = folder / f"{split}.conll"
        files[split].write_text("\n".join(lines))
    return files
