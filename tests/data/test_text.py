"""Labelled sentences (seqkit.data.text): SST-2, SST-5 and MR on the real files (counts from
../shared/data/MANIFEST.md), splits and folds, tokenizers, the user's TSV/JSONL files and
broken ones."""
from collections import Counter

import pytest

from seqkit.data import (kfold, load_sentiment, load_user_sentiment, read_labelled_jsonl,
                         read_labelled_tsv, read_mr, read_sst_trees, split_examples, tokenize)
from tests.helpers import SHARED_DATA, needs_shared_data


# ---- readers on the real files ----------------------------------------------------------------

@pytest.fixture(scope="module")
def mr():
    return read_mr(SHARED_DATA / "mr")


@needs_shared_data
def test_sst2_counts():
    splits = load_sentiment("sst2")
    assert {k: len(v) for k, v in splits.items()} == {"train": 67349, "val": 872, "test": 1821}
    assert Counter(e.label for e in splits["train"]) == {"1": 37569, "0": 29780}
    assert Counter(e.label for e in splits["test"]) == {"0": 912, "1": 909}
    assert splits["val"][0].tokens[:3] == ["it", "'s", "a"]


@needs_shared_data
def test_sst5_counts_and_binary_trees():
    splits = load_sentiment("sst5")
    assert {k: len(v) for k, v in splits.items()} == {"train": 8544, "val": 1101, "test": 2210}
    train = Counter(e.label for e in splits["train"])
    assert [train[str(i)] for i in range(5)] == [1092, 2218, 1624, 2322, 1288]
    tokens = {t for e in splits["train"] for t in e.tokens}
    assert "(" in tokens and "-LRB-" not in tokens and "-RRB-" not in tokens
    binary = read_sst_trees(SHARED_DATA / "sst" / "trees" / "test.txt", fine_grained=False)
    assert Counter(e.label for e in binary) == {"0": 912, "1": 909}


@needs_shared_data
def test_mr_counts_and_encoding(mr):
    assert Counter(e.label for e in mr) == {"1": 5331, "0": 5331}
    assert any("é" in t for e in mr for t in e.tokens)  # latin-1 bytes decoded, not dropped


@needs_shared_data
def test_mr_splits(mr):
    splits = load_sentiment("mr", seed=3)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [8530, 1066, 1066]
    assert load_sentiment("mr", seed=3)["test"] == splits["test"]  # seeded
    folds = [kfold(range(len(mr)), k=10, fold=f) for f in range(10)]
    tests = [t for _, t in folds]
    assert sorted(i for t in tests for i in t) == list(range(len(mr)))  # a partition
    assert {len(t) for t in tests} == {1066, 1067}
    assert all(set(tr).isdisjoint(te) and len(tr) + len(te) == len(mr) for tr, te in folds)
    cv = load_sentiment("mr", fold=3)
    assert [len(cv[k]) for k in ("train", "val", "test")] == [8636, 960, 1066]
    assert cv["test"] == [mr[i] for i in tests[3]]


def test_split_and_kfold_arguments():
    train, val, test = split_examples(list(range(10)), (0.6, 0.2, 0.2), seed=1)
    assert (len(train), len(val), len(test)) == (6, 2, 2)
    assert sorted(train + val + test) == list(range(10))
    with pytest.raises(ValueError, match="summing to 1"):
        split_examples([1, 2], (0.5, 0.6, 0.1))
    with pytest.raises(ValueError, match="fold must be in 0..9, got 10"):
        kfold(list(range(20)), k=10, fold=10)
    with pytest.raises(ValueError, match="only for mr"):
        load_sentiment("sst2", fold=1)


# ---- user files and malformed input -----------------------------------------------------------

def test_tokenize():
    assert tokenize("It 's  GOOD .\n") == ["it", "'s", "good", "."]
    assert tokenize("It 's", lower=False) == ["It", "'s"]


def test_user_files_tsv_and_jsonl(tmp_path):
    (tmp_path / "train.tsv").write_text("label\ttext\n1\tgreat fun  \n0\tdull\n")
    (tmp_path / "val.jsonl").write_text('{"text": "fine", "label": 1}\n\n')
    (tmp_path / "test.tsv").write_text("text\tlabel\nmeh\t0\n")
    splits = load_user_sentiment(tmp_path / "train.tsv", tmp_path / "val.jsonl",
                                 tmp_path / "test.tsv")
    assert splits["train"] == [(["great", "fun"], "1"), (["dull"], "0")]
    assert splits["val"] == [(["fine"], "1")] and splits["test"] == [(["meh"], "0")]
    no_header = tmp_path / "raw.tsv"
    no_header.write_text("0\tbad film\n")
    assert read_labelled_tsv(no_header, 1, 0, header=False) == [(["bad", "film"], "0")]
    with pytest.raises(FileNotFoundError, match="nothing.tsv"):
        load_user_sentiment(tmp_path / "nothing.tsv", tmp_path / "val.jsonl", no_header)


BROKEN = [  # file name, bytes, the 1-based line the error must name, a word of the message
    ("columns.tsv", b"sentence\tlabel\ngood film\t1\nbad\t0\textra\n", 3, "columns"),
    ("empty_text.tsv", b"sentence\tlabel\ngood\t1\n \t0\n", 3, "empty text"),
    ("utf8.tsv", b"sentence\tlabel\nok\t1\ncaf\xe9 noir\t0\n", 3, "utf-8"),
    ("empty.tsv", b"", 1, "no data rows"),
    ("header_only.tsv", b"sentence\tlabel\n", 1, "no data rows"),
    ("no_column.tsv", b"text\tlabel\ngood\t1\n", 1, "'sentence'"),
    ("open.txt", b"(3 (2 good) (3 film))\n(2 (2 bad) (2 film)\n", 2, "unbalanced"),
    ("close.txt", b"(3 (2 good) (3 film)))\n", 1, "unbalanced"),
    ("label.txt", b"(3 (2 good))\n(7 (2 bad))\n", 2, "'7'"),
    ("bad.jsonl", b'{"sentence": "good", "label": 1}\n{"sentence": "bad", "label": \n', 2,
     "bad JSON"),
    ("keys.jsonl", b'{"text": "good", "label": 1}\n', 1, "keys"),
]


@pytest.mark.parametrize("name, data, line, word", BROKEN, ids=[b[0] for b in BROKEN])
def test_malformed_input_names_file_and_line(tmp_path, name, data, line, word):
    path = tmp_path / name
    path.write_bytes(data)
    if name.endswith(".tsv"):
        read = lambda: read_labelled_tsv(path, "sentence", "label")  # noqa: E731
    elif name.endswith(".jsonl"):
        read = lambda: read_labelled_jsonl(path, "sentence", "label")  # noqa: E731
    else:
        read = lambda: read_sst_trees(path, fine_grained=True)  # noqa: E731
    with pytest.raises(ValueError) as err:
        read()
    assert f"{name}:{line}:" in str(err.value) and word in str(err.value)


def test_the_simple_tokenizer_splits_as_the_penn_treebank_does():
    from seqkit.data.text import tokenize

    cases = {"great!": ["great", "!"], "Great.": ["great", "."], "great": ["great"],
             "It's a can't-miss film (3.5 stars)": ["it", "'s", "a", "ca", "n't", "-", "miss",
                                                    "film", "(", "3.5", "stars", ")"],
             "state-of-the-art -LRB- sic -RRB-": ["state-of-the-art", "-lrb-", "sic", "-rrb-"],
             "does n't": ["does", "n't"], "Mr. Smith's U.S. film...": [
                 "mr.", "smith", "'s", "u.s.", "film", "..."],
             "a `` quoted '' -- dash": ["a", "``", "quoted", "''", "--", "dash"]}
    for text, tokens in cases.items():
        assert tokenize(text, tokenizer="simple") == tokens, text
    assert tokenize("Great!", lower=False, tokenizer="whitespace") == ["Great!"]
    with pytest.raises(ValueError, match="unknown tokenizer 'spaces'"):
        tokenize("x", tokenizer="spaces")
