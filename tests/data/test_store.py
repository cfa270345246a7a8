"""Token stores: examples as memory-mapped id arrays, built once (atomically, one process at a
time) and read by every later run; the translation data's training split comes from one."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from seqkit.data.parallel import StoredPairs, TranslationData, read_aligned, reservoir
from seqkit.data.store import TokenStore, content_key, id_dtype, write
from seqkit.data.subword import Subwords
from tests.helpers import ROOT


def test_a_store_holds_its_examples_in_the_smallest_dtype(tmp_path):
    examples = [([5, 6, 7], [1]), ([], [2, 3]), ([300], [])]
    store = TokenStore.cached(tmp_path / "s", lambda f: write(f, ("a", "b"), iter(examples),
                                                                vocab_size=301, meta={"x": 1}))
    assert len(store) == 3 and [store[i] for i in range(3)] == examples
    assert store.ids["a"].dtype == np.uint16 and isinstance(store.ids["a"], np.memmap)
    assert store.lengths("a").tolist() == [3, 0, 1] and store.meta["x"] == 1
    assert id_dtype(256) == np.uint8 and id_dtype(257) == np.uint16 and id_dtype(70000) == np.uint32
    again = TokenStore.cached(tmp_path / "s", lambda f: pytest.fail("built twice"))
    assert [again[i] for i in range(3)] == examples
    assert not list(tmp_path.glob("*.part"))


def test_the_key_follows_the_files_bytes_and_the_options(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("ein hund\n")
    key = content_key([a], {"vocab_size": 8})
    assert key == content_key([a], {"vocab_size": 8}) != content_key([a], {"vocab_size": 9})
    a.write_text("ein hund!\n")
    assert content_key([a], {"vocab_size": 8}) != key
    with pytest.raises(FileNotFoundError, match="no file"):
        content_key([tmp_path / "none"], {})


def test_reservoir_keeps_a_short_stream_whole_and_bounds_a_long_one():
    assert reservoir(iter(range(5)), 10) == list(range(5)) == reservoir(range(5), 0)
    sample = reservoir(iter(range(100_000)), 1000, seed=1)
    assert len(sample) == 1000 == len(set(sample)) and sample == reservoir(range(100_000), 1000, 1)
    assert 40_000 < np.mean(sample) < 60_000  # drawn from the whole stream


def _data(corpus, **options):
    return TranslationData(dataset=None, files={
        "train": [str(corpus / "train.de"), str(corpus / "train.en")],
        "val": str(corpus / "val.tsv"), "test": str(corpus / "test.jsonl")},
        vocab_size=60, batch_size=8, **options)


def test_the_training_split_comes_from_the_store_as_it_would_from_lists(parallel_corpus,
                                                                         monkeypatch):
    data = _data(parallel_corpus, max_len=12)
    data.setup("fit")
    train = data.splits["train"]
    assert isinstance(train, StoredPairs)
    pairs = read_aligned(parallel_corpus / "train.de", parallel_corpus / "train.en")
    direct = data._drop_long(data.to_items(pairs, "train"))
    assert 0 < len(train) < len(pairs)  # max_len left some out
    assert [train[i][1:3] for i in range(len(train))] == [it[1:3] for it in direct]
    assert data.lengths("train").tolist() == [data.length(it) for it in direct]
    batch = next(iter(data.train_dataloader()))
    assert batch["src"].shape[0] == 8 and batch["ref"] == [None] * 8
    # another run, another module over the same files: the store, nothing learnt again
    monkeypatch.setattr(Subwords, "learn", lambda *a, **k: pytest.fail("learnt again"))
    again = _data(parallel_corpus, max_len=12)
    again.setup("fit")
    assert again.tokenizer.protos == data.tokenizer.protos
    assert again.splits["train"].store.folder == train.store.folder


def test_the_subword_model_learns_from_a_bounded_sample(parallel_corpus):
    whole, sampled = _data(parallel_corpus), _data(parallel_corpus, sample_sentences=40)
    for data in (whole, sampled):
        data.setup("fit")
    assert whole.tokenizer.protos != sampled.tokenizer.protos
    assert len(sampled.splits["train"]) == len(whole.splits["train"])  # all pairs encoded


KILLED_BUILD = """
import sys, time
from pathlib import Path
from seqkit.data.parallel import TranslationData
examples = TranslationData._examples
def slow(self, *args):
    fields, stream, files, top = examples(self, *args)
    def paced():
        for n, pair in enumerate(stream):
            if n == 100:
                Path(sys.argv[2]).touch()  # mid-build: the parent kills us now
                time.sleep(60)
            yield pair
    return fields, paced(), files, top
TranslationData._examples = slow
corpus = Path(sys.argv[1])
TranslationData(dataset=None, files={"train": [str(corpus / "train.de"), str(corpus / "train.en")],
                "val": str(corpus / "val.tsv")}, vocab_size=60, max_len=None).prepare_data()
"""


def test_a_prepare_killed_midway_leaves_no_store_and_the_next_run_builds_it(
        parallel_corpus, tmp_path, monkeypatch):
    env = {**os.environ, "SEQKIT_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    marker = tmp_path / "mid-build"
    child = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(parallel_corpus),
                              str(marker)], env=env)
    deadline = time.time() + 120
    while not marker.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the build never got midway"
    child.send_signal(signal.SIGKILL)
    child.wait()
    stores = tmp_path / "cache" / "stores"
    assert list(stores.glob(".*.part")) and not [p for p in stores.iterdir()
                                                  if not p.name.startswith(".")]
    monkeypatch.setenv("SEQKIT_CACHE", str(tmp_path / "cache"))
    data = _data(parallel_corpus, max_len=None)
    data.setup("fit")  # the killed build's lock died with it; its leftovers are removed
    assert not list(stores.glob(".*.part"))
    pairs = read_aligned(parallel_corpus / "train.de", parallel_corpus / "train.en")
    assert len(data.splits["train"]) == len(pairs)
    src = torch.tensor(data.splits["train"][len(pairs) - 1][1])
    assert src.tolist() == data.tokenizer.encode_src([pairs[-1][0]])[0]


@pytest.mark.parametrize("copy", [True, False])
def test_summarization_examples_come_from_the_store_as_from_lists(tmp_path, copy):
    """One example per document and summary, with the source in the extended vocabulary:
    what to_items gives, but for the references (training scores no ROUGE) and the unknown
    words themselves (only their number, which sizes the extended vocabulary)."""
    from seqkit.data.summarization import StoredDocuments, SummarizationData

    rows = [f"the cat number{i} sat on mat{i % 5} . it was fine\tcat{i} sat" for i in range(60)]
    for split in ("train", "val"):
        (tmp_path / f"{split}.tsv").write_text("source\ttarget\n" + "\n".join(rows) + "\n")
    data = SummarizationData(dataset=None, files={"train": str(tmp_path / "train.tsv"),
                                                  "val": str(tmp_path / "val.tsv")},
                             min_freq=2, copy=copy, max_src_len=8, max_len=3)
    data.setup("fit")
    train = data.splits["train"]
    assert isinstance(train, StoredDocuments)
    direct = data._drop_long(data.to_items(data.read_file(tmp_path / "train.tsv", "train"),
                                           "train"))
    assert len(train) == len(direct) == 60
    for stored, item in zip((train[i] for i in range(len(train))), direct):
        assert (stored.src, stored.tgt, stored.src_ext) == (item.src, item.tgt, item.src_ext)
        assert len(stored.oovs) == len(item.oovs) and stored.refs == []
    batch = next(iter(data.train_dataloader()))
    assert batch["n_ext"] >= 1 if copy else "n_ext" not in batch


def test_loader_workers_read_the_store_as_the_main_process_does(parallel_corpus):
    """Each worker process opens the store's files for itself (the descriptors are not
    inherited through pickling): the batches equal the main process's."""
    batches = []
    for workers in (0, 2):
        data = _data(parallel_corpus, num_workers=workers)
        data.setup("fit")
        batches.append([(b["src"], b["tgt_out"]) for b in data.train_dataloader()])
    assert len(batches[0]) == len(batches[1]) == 40
    for (a, b), (c, d) in zip(*batches):
        assert torch.equal(a, c) and torch.equal(b, d)
