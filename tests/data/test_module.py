"""Data modules split by split: scoring val or test with a checkpoint's artifacts (restore) reads
no training file, and user files may leave the test split out."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqkit.data.classification import SentimentData
from seqkit.data.lm import LMData
from seqkit.data.music import MusicData, roll_to_midi
from seqkit.data.ner import NERData
from seqkit.data.parallel import TranslationData
from seqkit.data.summarization import SummarizationData

ANIMALS = [("hund", "dog"), ("katze", "cat"), ("maus", "mouse"), ("vogel", "bird")]
VERBS = [("sieht", "sees"), ("jagt", "chases"), ("mag", "likes")]


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQKIT_CACHE", str(tmp_path / "cache"))  # sentencepiece models


def _pairs(n, offset=0):
    """Aligned German-English toy sentences."""
    out = []
    for i in range(offset, offset + n):
        (a, a_en), (v, v_en), (b, b_en) = (ANIMALS[i % 4], VERBS[i % 3], ANIMALS[(i // 3) % 4])
        out.append((f"der {a} {v} die {b}", f"the {a_en} {v_en} the {b_en}"))
    return out


# Each case writes tiny train/val/test files and gives (build(files, **options), files); the
# training file (or folder) is files["train"], or its first file.
def sentiment(tmp):
    rows = {"train": ["a great film\tpos", "dull and slow\tneg", "great fun\tpos",
                      "slow dull plot\tneg"],
            "val": ["great plot\tpos", "so dull\tneg"],
            "test": ["a fun film\tpos", "unseen words dull\tneg"]}
    files = {}
    for split, lines in rows.items():
        files[split] = tmp / f"{split}.tsv"
        files[split].write_text("text\tlabel\n" + "".join(line + "\n" for line in lines))
    return lambda f, **kw: SentimentData(None, f, **kw), files


def ner(tmp):
    sentences = {"train": ["John B-PER\nsaw O\nParis B-LOC", "Mary B-PER\nleft O\nBerlin B-LOC",
                           "New B-LOC\nYork I-LOC\nwaits O"],
                 "val": ["Mary B-PER\nsaw O\nYork B-LOC"],
                 "test": ["Zorba B-PER\nsaw O\nNew B-LOC\nYork I-LOC", "John B-PER\nleft O"]}
    files = {}
    for split, sents in sentences.items():
        files[split] = tmp / f"{split}.conll"
        files[split].write_text("\n\n".join(sents) + "\n")
    return lambda f, **kw: NERData(None, f, **kw), files


def translation(tmp):
    train = _pairs(40)
    (tmp / "train.de").write_text("".join(s + "\n" for s, _ in train))
    (tmp / "train.en").write_text("".join(t + "\n" for _, t in train))
    (tmp / "val.tsv").write_text("src\ttgt\n" + "".join(f"{s}\t{t}\n" for s, t in _pairs(6, 40)))
    (tmp / "test.jsonl").write_text("".join(json.dumps({"src": s, "tgt": t}) + "\n"
                                            for s, t in _pairs(6, 50)))
    files = {"train": [tmp / "train.de", tmp / "train.en"], "val": tmp / "val.tsv",
             "test": tmp / "test.jsonl"}
    return lambda f, **kw: TranslationData(None, f, vocab_size=40, **kw), files


def summarization(tmp):
    files = {}
    for split, (n, offset) in {"train": (12, 0), "val": (3, 20), "test": (3, 30)}.items():
        files[split] = tmp / f"{split}.jsonl"
        files[split].write_text("".join(
            json.dumps({"source": f"{s.capitalize()}. Zorba{i} came.", "target": t}) + "\n"
            for i, (s, t) in enumerate(_pairs(n, offset))))
    return lambda f, **kw: SummarizationData(None, f, min_freq=1, max_src_len=8, **kw), files


def lm(tmp):
    files = {}
    for split, text in {"train": "the cat sat on the mat\n" * 4, "val": "the mat sat\n" * 2,
                        "test": "a bat sat on the cat\n"}.items():
        files[split] = tmp / f"{split}.txt"
        files[split].write_text(text)
    return lambda f, **kw: LMData(None, f, batch_size=2, eval_batch_size=2, bptt=4, **kw), files


def music(tmp):
    rng, files = np.random.default_rng(0), {}
    for split, n in {"train": 3, "val": 1, "test": 2}.items():
        files[split] = tmp / split
        files[split].mkdir()
        for i in range(n):
            roll_to_midi((rng.random((8, 88)) < 0.1).astype(np.uint8), files[split] / f"{i}.mid",
                         fs=2.0)
    return lambda f, **kw: MusicData(None, f, **{"fs": 2.0, **kw}), files


CASES = [sentiment, ner, translation, summarization, lm, music]


def _plain(x):
    """Encoded examples as plain lists (tensors too), to compare."""
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _strs(files):
    return {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in files.items()}


def _without(files: dict, split: str, how: str) -> dict:
    """``files`` with ``split`` set to null (as a config's ``~`` gives it) or left out."""
    return {**files, split: None} if how == "null" else {k: v for k, v in files.items()
                                                          if k != split}


def _train_path(files) -> Path:
    train = files["train"]
    return Path(train[0] if isinstance(train, list) else train)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_restored_module_reads_only_the_test_split(tmp_path, case):
    build, files = case(tmp_path)
    files = _strs(files)
    first = build(files)
    first.setup("fit")
    artifacts = first.artifacts()
    first.setup("test")
    expected, dims = _plain(first.splits["test"]), first.dims()

    train = _train_path(files)
    train.rename(train.with_name(train.name + ".gone"))
    # music learns nothing from train, but reads MIDI at the checkpoint's fs, not this one
    again = build(files, fs=4.0) if case is music else build(files)
    again.restore(artifacts)
    again.setup("test")
    assert set(again.splits) == {"test"}
    assert _plain(again.splits["test"]) == expected
    assert again.dims() == dims and again.artifacts() == artifacts
    assert next(iter(again.test_dataloader())) is not None

    fresh = build(files)
    if case is music:  # nothing to learn: the test split alone, without restore too
        fresh.setup("test")
        assert _plain(fresh.splits["test"]) == expected
    else:  # the vocabulary comes from the training file, which is gone
        with pytest.raises(FileNotFoundError, match=f"no file {train}"):
            fresh.setup("test")


@pytest.mark.parametrize("how", ["null", "absent"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_train_and_val_without_a_test_split(tmp_path, case, how):
    build, files = case(tmp_path)
    data = build(_without(_strs(files), "test", how))
    data.setup("fit")
    assert data.has_split("train") and data.has_split("val") and not data.has_split("test")
    assert set(data.splits) == {"train", "val"} and data.dims()
    data.setup()  # every split there is
    assert set(data.splits) == {"train", "val"}
    assert data.artifacts()["task"] == data.task
    assert next(iter(data.val_dataloader())) is not None
    with pytest.raises(ValueError, match="there is no test split: data.files.test is not"):
        data.setup("test")


@pytest.mark.parametrize("how", ["null", "absent"])
@pytest.mark.parametrize("missing", ["train", "val"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_train_and_val_are_required(tmp_path, case, missing, how):
    build, files = case(tmp_path)
    with pytest.raises(ValueError, match=f"^data.files.{missing} is required$"):
        build(_without(_strs(files), missing, how))


def test_stages_load_their_splits_once(tmp_path):
    build, files = sentiment(tmp_path)
    data = build(_strs(files))
    data.setup("validate")  # the vocabulary first: train is read (and kept) too
    assert set(data.splits) == {"train", "val"}
    val = data.splits["val"]
    files["val"].unlink()
    files["train"].unlink()
    data.setup("fit")  # nothing read again
    assert data.splits["val"] is val
    data.setup("test")
    assert set(data.splits) == {"train", "val", "test"}


def test_a_restored_module_validates_with_the_val_file_alone(tmp_path):
    build, files = sentiment(tmp_path)
    first = build(_strs(files))
    first.setup("fit")
    files["train"].unlink()
    restored = build(_strs(files))
    restored.restore(first.artifacts())
    restored.setup("validate")
    assert set(restored.splits) == {"val"}
    assert _plain(restored.splits["val"]) == _plain(first.splits["val"])


def test_restore_takes_only_its_own_tasks_artifacts(tmp_path):
    build, files = sentiment(tmp_path)
    data = build(_strs(files))
    with pytest.raises(ValueError, match="SentimentData cannot restore the artifacts of a "
                                         "'ner' checkpoint"):
        data.restore({"task": "ner"})


def test_restore_sets_casing_and_labels_from_the_checkpoint(tmp_path):
    build, files = sentiment(tmp_path)
    first = build(_strs(files))
    first.setup("fit")
    cased = build(_strs(files), lower=False)
    cased.restore(first.artifacts())
    assert cased.lower and cased.labels == ["neg", "pos"]


def test_lm_single_text_restores_and_reads_that_file_for_test(tmp_path):
    text = tmp_path / "all.txt"
    text.write_text("the cat sat on the mat\n" * 10 + "a bat\n")
    first = LMData(None, str(text), level="word")
    first.setup()
    restored = LMData(None, str(text))  # char level, unless the checkpoint says otherwise
    restored.restore(first.artifacts())
    restored.setup("test")
    assert restored.level == "word" and restored.has_split("test")
    assert torch.equal(restored.ids["test"], first.ids["test"])
    assert torch.equal(first.ids["test"], first.ids["val"])  # one text: test = val
