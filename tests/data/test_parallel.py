"""Parallel text for translation: readers that name the file and line of bad input, Multi30k,
batches with shifted targets and their references."""
import gzip

import pytest
import torch

from seqkit.data.cache import data_root
from seqkit.data.parallel import (TranslationData, load_multi30k, read_aligned, read_tsv_pairs,
                                  read_user_pairs)

pytestmark = pytest.mark.usefixtures("derived_cache")


ALIGNED = "eins\nzwei\ndrei\n"


BAD_INPUT = [  # (files of one split, what the error must say)
    ({"a.de": ALIGNED, "b.en": "one\ntwo\n"}, r"a\.de:3: .*b\.en has only 2 lines"),
    ({"a.de": ALIGNED, "b.en": "one\n\nthree\n"}, r"b\.en:2: empty line on one side.*'zwei'"),
    ({"a.de": ALIGNED, "b.en": b"one\ntwo\nthr\xe9e\n"},
     r"b\.en:3: byte 0xe9 at column 4 is not valid utf-8"),
    ({"p.tsv": "src\ttgt\neins\tone\nzwei\n"}, r"p\.tsv:3: expected at least 2 tab-separated"),
    ({"p.tsv": "de\ten\neins\tone\n"}, r"p\.tsv:1: no column 'src'"),
    ({"p.jsonl": '{"src": "eins", "tgt": "one"}\n{"src": "zwei", "tgt": " "}\n'},
     r"p\.jsonl:2: empty line on one side"),
    ({"p.jsonl": '{"src": "eins", "tgt": "one"}\n{"src": "zwei"\n'}, r"p\.jsonl:2: bad JSON"),
]


@pytest.mark.parametrize("files, match", BAD_INPUT)
def test_readers_name_the_file_and_line_of_bad_input(tmp_path, files, match):
    paths = []
    for name, content in files.items():
        paths.append(tmp_path / name)
        if isinstance(content, bytes):
            paths[-1].write_bytes(content)
        else:
            paths[-1].write_text(content)
    with pytest.raises(ValueError, match=match):
        read_user_pairs(paths if len(paths) == 2 else paths[0])


def test_aligned_gzip_files_and_index_columns(tmp_path):
    with gzip.open(tmp_path / "a.gz", "wt") as f:
        f.write("eins zwei\ndrei\n\n")  # a blank last line on both sides is no pair
    (tmp_path / "b.txt").write_text("one two\nthree\n\n")
    assert read_aligned(tmp_path / "a.gz", tmp_path / "b.txt") == [("eins zwei", "one two"),
                                                                    ("drei", "three")]
    (tmp_path / "p.tsv").write_text("x\tone\teins\n")
    assert read_tsv_pairs(tmp_path / "p.tsv", 2, 1) == [("eins", "one")]
    # indices read every split headerless: a split whose file has the header says so
    (tmp_path / "h.tsv").write_text("src\ttgt\neins\tone\n")
    assert read_tsv_pairs(tmp_path / "h.tsv") == [("eins", "one")]
    with pytest.raises(ValueError, match=r"h\.tsv:1: this row is a header .*by index"):
        read_tsv_pairs(tmp_path / "h.tsv", 0, 1)


@pytest.mark.skipif(not (data_root() / "multi30k" / "raw" / "train.de.gz").is_file(),
                    reason="needs Multi30k in the data folder")
def test_multi30k_splits_in_both_directions():
    de_en = load_multi30k("de", "en")
    assert [len(de_en[s]) for s in ("train", "val", "test")] == [29000, 1014, 1000]
    en_de = load_multi30k("en", "de", test_set="test_2018_flickr")
    assert en_de["train"][0] == de_en["train"][0][::-1] and len(en_de["test"]) == 1071
    with pytest.raises(ValueError, match="test_set"):
        load_multi30k(test_set="test_2019")


def test_batches_shift_targets_and_keep_references(parallel_corpus):
    data = TranslationData(dataset=None, vocab_size=40, files={
        "train": [str(parallel_corpus / "train.de"), str(parallel_corpus / "train.en")],
        "val": str(parallel_corpus / "val.tsv"), "test": str(parallel_corpus / "test.jsonl")},
        batch_size=8)
    data.setup()
    batch = next(iter(data.val_dataloader()))
    n = batch["tgt_lengths"]
    assert (batch["tgt_in"][:, 0] == 2).all()
    assert (batch["tgt_out"][torch.arange(8), n - 1] == 3).all()
    assert torch.equal(batch["tgt_in"][:, 1:], batch["tgt_out"][:, :-1].masked_fill(
        batch["tgt_out"][:, :-1] == 3, 0))
    refs = [t for _, t in read_tsv_pairs(parallel_corpus / "val.tsv")]
    assert batch["ref"] == [refs[i] for i in batch["index"].tolist()]
    assert data.tokenizer.decode_tgt([row[:k - 1].tolist() for row, k in
                                     zip(batch["tgt_out"], n.tolist())]) == batch["ref"]
