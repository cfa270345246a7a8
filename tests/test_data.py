"""seqkit.data: vocabulary, dataset cache and downloads, sentiment readers on real and broken files.

Counts come from ../shared/data/MANIFEST.md; no test touches the network (downloads use file://).
"""
import hashlib
import io
import json
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from seqkit.data import (DATASETS, ChecksumError, DatasetSpec, Source, Vocab, data_root,
                         dataset_file, derived_root, kfold, load_sentiment, load_user_sentiment,
                         read_labelled_jsonl, read_labelled_tsv, read_mr, read_sst_trees,
                         split_examples, tokenize, verify)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
real_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")


# ---- vocabulary -------------------------------------------------------------------------------

SEQS = [["b", "a", "b", "c"], ["a", "b", "d"]]  # b: 3, a: 2, c: 1, d: 1


def test_vocab_order_and_specials():
    vocab = Vocab.build(SEQS)
    assert vocab.itos == ["<pad>", "<unk>", "b", "a", "c", "d"]  # ties c, d by the token
    assert (vocab.pad_index, vocab.unk_index) == (0, 1)
    extra = Vocab.build(SEQS, specials=("<bos>", "<eos>"))
    assert extra.itos[:5] == ["<pad>", "<unk>", "<bos>", "<eos>", "b"]


def test_vocab_min_freq_and_max_size():
    assert Vocab.build(SEQS, min_freq=2).itos == ["<pad>", "<unk>", "b", "a"]
    assert Vocab.build(SEQS, max_size=3).itos == ["<pad>", "<unk>", "b"]
    with pytest.raises(ValueError, match="min_freq"):
        Vocab.build(SEQS, min_freq=0)
    with pytest.raises(ValueError, match="max_size=1"):
        Vocab.build(SEQS, max_size=1)


def test_vocab_unk_encode_decode():
    vocab = Vocab.build(SEQS, min_freq=2)
    ids = vocab.encode(["a", "zebra", "b"])
    assert ids == [3, vocab.unk_index, 2]
    assert vocab.decode(ids) == ["a", "<unk>", "b"]
    assert "zebra" not in vocab and vocab["zebra"] == 1
    with pytest.raises(ValueError, match="index 9"):
        vocab.decode([9])


def test_vocab_state_dict_round_trip():
    vocab = Vocab.build(SEQS, specials=("<eos>",))
    state = json.loads(json.dumps(vocab.state_dict()))  # plain types only
    again = Vocab.from_state_dict(state)
    assert again == vocab and again.encode(["d", "?"]) == vocab.encode(["d", "?"])


def test_label_vocab_without_specials():
    labels = Vocab.build([["pos", "neg", "pos"]], pad=None, unk=None)
    assert labels.itos == ["pos", "neg"] and labels.pad_index is None
    with pytest.raises(KeyError, match="neutral"):
        labels["neutral"]


def test_char_vocab():
    vocab = Vocab.build(["hello", "world"], specials=("<bos>",))
    assert vocab.itos[3] == "l" and vocab.decode(vocab.encode("low")) == list("low")


# ---- cache and downloads ----------------------------------------------------------------------

def test_roots_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQKIT_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("SEQKIT_CACHE", str(tmp_path / "c"))
    assert data_root() == tmp_path / "d" and not data_root().exists()
    assert derived_root() == tmp_path / "c" and (tmp_path / "c").is_dir()
    monkeypatch.delenv("SEQKIT_DATA")
    assert data_root() == Path.home() / ".cache" / "seqkit" / "data"


def test_unknown_dataset_and_file():
    with pytest.raises(ValueError, match="known: .*mr.*sst2"):
        dataset_file("imdb", "train.tsv")
    with pytest.raises(ValueError, match="no file 'nope.txt'"):
        dataset_file("mr", "nope.txt")


def test_missing_file_without_url(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        dataset_file("conll2003", "eng.train", root=tmp_path)
    msg = str(err.value)
    assert "eng.train" in msg and str(tmp_path / "conll2003") in msg and "SEQKIT_DATA" in msg


def test_network_failure_names_files_and_folder(monkeypatch, tmp_path):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError) as err:
        dataset_file("mr", "rt-polarity.pos", root=tmp_path)
    msg = str(err.value)
    assert "rt-polarity.pos" in msg and "rt-polarity.neg" in msg and "unreachable" in msg
    assert str(tmp_path / "mr") in msg and "SEQKIT_DATA" in msg
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _remote(tmp_path: Path) -> dict[str, str]:
    """A plain file, a tar.gz and a zip under tmp_path/remote; returns name -> file:// URL."""
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "plain.txt").write_bytes(b"plain\n")
    with tarfile.open(remote / "pack.tar.gz", "w:gz") as tar:
        for name, data in (("pack/a.txt", b"a\n"), ("pack/b.txt", b"b\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with zipfile.ZipFile(remote / "pack.zip", "w") as z:
        z.writestr("inner/c.txt", b"c\n")
    return {p.name: p.as_uri() for p in remote.iterdir()}


def _toy(tmp_path: Path, urls: dict[str, str], plain_sha: str = _sha(b"plain\n")) -> DatasetSpec:
    zip_sha = _sha((tmp_path / "remote" / "pack.zip").read_bytes())
    return DatasetSpec(
        {"plain.txt": plain_sha, "a.txt": _sha(b"a\n"), "sub/b.txt": _sha(b"b\n"),
         "pack.zip": zip_sha, "c.txt": _sha(b"c\n")},
        (Source(urls["plain.txt"], saves="plain.txt"),
         Source(urls["pack.tar.gz"], members={"pack/a.txt": "a.txt", "pack/b.txt": "sub/b.txt"}),
         Source(urls["pack.zip"], saves="pack.zip", members={"inner/c.txt": "c.txt"})))


def test_download_from_file_url(monkeypatch, tmp_path):
    monkeypatch.setitem(DATASETS, "toy", _toy(tmp_path, _remote(tmp_path)))
    root = tmp_path / "data"
    assert dataset_file("toy", "plain.txt", root).read_bytes() == b"plain\n"
    assert dataset_file("toy", "sub/b.txt", root).read_bytes() == b"b\n"
    assert (root / "toy" / "a.txt").is_file()  # one download installs all of its members
    assert dataset_file("toy", "c.txt", root).read_bytes() == b"c\n"
    assert verify("toy", root) == dict.fromkeys(DATASETS["toy"].files, True)
    assert not list(root.rglob("*.part"))


def test_checksum_mismatch_leaves_nothing(monkeypatch, tmp_path):
    urls = _remote(tmp_path)
    monkeypatch.setitem(DATASETS, "toy", _toy(tmp_path, urls, plain_sha="0" * 64))
    root = tmp_path / "data"
    with pytest.raises(ChecksumError, match="plain.txt: sha256"):
        dataset_file("toy", "plain.txt", root)
    bad_member = DatasetSpec({"a.txt": "0" * 64},
                             (Source(urls["pack.tar.gz"], members={"pack/a.txt": "a.txt"}),))
    monkeypatch.setitem(DATASETS, "toy", bad_member)
    with pytest.raises(ValueError, match="pack/a.txt"):
        dataset_file("toy", "a.txt", root)
    assert not [p for p in root.rglob("*") if p.is_file()]


@real_data
def test_verify_real_files():
    assert verify("mr", SHARED_DATA) == {"rt-polarity.neg": True, "rt-polarity.pos": True}
    for name, spec in DATASETS.items():  # the catalog's hashes are those of ../shared/data
        assert verify(name, SHARED_DATA) == dict.fromkeys(spec.files, True), name


@real_data
def test_read_only_data_folder(monkeypatch, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SHARED_DATA / "mr", data / "mr")
    monkeypatch.setenv("SEQKIT_DATA", str(data))
    monkeypatch.setenv("SEQKIT_CACHE", str(tmp_path / "derived"))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("no download"))
    folders = [data, data / "mr"]
    for p in [*folders, *(data / "mr").iterdir()]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = sorted((str(p), p.stat().st_mtime_ns) for p in data.rglob("*"))
    try:
        splits = load_sentiment("mr")
    finally:
        for p in folders:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    assert sum(map(len, splits.values())) == 10662
    assert sorted((str(p), p.stat().st_mtime_ns) for p in data.rglob("*")) == before


# ---- readers on the real files ----------------------------------------------------------------

@pytest.fixture(scope="module")
def mr():
    return read_mr(SHARED_DATA / "mr")


@real_data
def test_sst2_counts():
    splits = load_sentiment("sst2")
    assert {k: len(v) for k, v in splits.items()} == {"train": 67349, "val": 872, "test": 1821}
    assert Counter(e.label for e in splits["train"]) == {"1": 37569, "0": 29780}
    assert Counter(e.label for e in splits["test"]) == {"0": 912, "1": 909}
    assert splits["val"][0].tokens[:3] == ["it", "'s", "a"]


@real_data
def test_sst5_counts_and_binary_trees():
    splits = load_sentiment("sst5")
    assert {k: len(v) for k, v in splits.items()} == {"train": 8544, "val": 1101, "test": 2210}
    train = Counter(e.label for e in splits["train"])
    assert [train[str(i)] for i in range(5)] == [1092, 2218, 1624, 2322, 1288]
    tokens = {t for e in splits["train"] for t in e.tokens}
    assert "(" in tokens and "-LRB-" not in tokens and "-RRB-" not in tokens
    binary = read_sst_trees(SHARED_DATA / "sst" / "trees" / "test.txt", fine_grained=False)
    assert Counter(e.label for e in binary) == {"0": 912, "1": 909}


@real_data
def test_mr_counts_and_encoding(mr):
    assert Counter(e.label for e in mr) == {"1": 5331, "0": 5331}
    assert any("é" in t for e in mr for t in e.tokens)  # latin-1 bytes decoded, not dropped


@real_data
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


@real_data
def test_a_pre_tokenized_dataset_is_read_as_it_is_and_predict_splits_typed_text():
    from seqkit.data.classification import SentimentData

    data = SentimentData(dataset="sst2")
    data.setup("fit")
    assert "4/5ths" in data.vocab  # the file's token, which the simple tokenizer would split
    assert data.artifacts()["tokenizer"] == "simple"  # what typed text gets in predict
