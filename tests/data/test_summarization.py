"""Summarization data: SciTLDR's splits, bad records named by file and line, sentences of plain
text."""
import json

import pytest

from seqkit.data.cache import data_root
from seqkit.data.summarization import load_scitldr, read_scitldr, split_sentences
from tests.helpers import shared_file


@pytest.mark.skipif(not (data_root() / "scitldr").is_dir(), reason="needs SEQKIT_DATA")
def test_scitldr_splits_have_the_official_sizes():
    shared_file("scitldr", "SciTLDR-A/test.jsonl")  # skips where the data is not here
    splits = load_scitldr()
    assert {k: len(v) for k, v in splits.items()} == {"train": 1992, "val": 619, "test": 618}
    assert all(len(d.summaries) == 1 for d in splits["train"])
    assert max(len(d.summaries) for d in splits["test"]) > 1


@pytest.mark.parametrize("text, match", [
    ('{"source": ["A."], "target": ["b"]}\n{"source": [], "target": ["c"]}\n',
     r"x\.jsonl:2: paper '\?' has an empty source"),
    ('{"source": ["A."], "target": ["b"]}\n{"source": ["A."]}\n',
     r"x\.jsonl:2: expected an object with keys"),
    ('{"source": ["A."], "target": ["b"]\n', r"x\.jsonl:1: bad JSON"),
])
def test_bad_records_name_file_and_line(tmp_path, text, match):
    (tmp_path / "x.jsonl").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_scitldr(tmp_path / "x.jsonl")


def test_sentences_of_plain_text():
    assert split_sentences("We propose X. It works (mostly). 3 tests pass! e.g. this") == [
        "We propose X.", "It works (mostly).", "3 tests pass! e.g. this"]


def test_json_values_of_the_wrong_type_are_named(tmp_path):
    path = tmp_path / "papers.jsonl"
    for row in ({"source": "A b.", "target": ["b"]}, {"source": [1, 2], "target": ["b"]},
                {"source": ["A b."], "target": [None]}):
        path.write_text(json.dumps(row) + "\n")
        with pytest.raises(ValueError, match=r"papers.jsonl:1: "):
            read_scitldr(path)
