"""CoNLL column files: reading, errors with file and line, scheme conversion, the real data."""
import random
import re
from itertools import product

import pytest

from seqkit.data.conll import (Sentence, convert_tags, detect_scheme, load_ner, load_user_ner,
                               read_conll)
from seqkit.metrics.spans import SCHEMES, entities, transition_allowed
from tests.helpers import shared_file

FOUR_COLUMNS = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER
-DOCSTART- -X- -X- O
BRUSSELS NNP B-NP I-LOC"""


def at(path):
    """A regex matching the start of an error about ``path``."""
    return "^" + re.escape(str(path))


def write(tmp_path, text, name="data.conll", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_reads_columns_sentences_and_skips_docstart(tmp_path):
    sentences = read_conll(write(tmp_path, FOUR_COLUMNS), scheme="IOB1")
    assert [s.tokens for s in sentences] == [["EU", "rejects", "German"],
                                             ["Peter", "Blackburn"], ["BRUSSELS"]]
    assert sentences[0].tags == ["I-ORG", "O", "I-MISC"]
    assert sentences[1].columns[1:3] == [["NNP", "NNP"], ["B-NP", "I-NP"]]
    pos = read_conll(write(tmp_path, FOUR_COLUMNS), tag_column=1)
    assert pos[0].tags == ["NNP", "VBZ", "JJ"]  # no scheme: any column, unchecked


def test_whitespace_only_lines_and_crlf_end_sentences(tmp_path):
    # WNUT-17's training file separates most sentences with a line holding one tab
    text = "a\tO\r\nb\tB-person\r\n\t\r\nc\tO\r\n  \r\n\r\nd\tI-person\r\n"
    sentences = read_conll(write(tmp_path, text), scheme="IOB2")
    assert [s.tokens for s in sentences] == [["a", "b"], ["c"], ["d"]]
    assert isinstance(sentences[0], Sentence) and sentences[2].tags == ["I-person"]


def test_tokens_may_hold_non_ascii_spaces(tmp_path):
    sentences = read_conll(write(tmp_path, "a\u00a0b O\n\u3000 O\n"))
    assert sentences[0].tokens == ["a\u00a0b", "\u3000"]


@pytest.mark.parametrize("text, message", [
    ("a B O\nb C\n", r":2: expected 3 columns as on line 1, found 2: 'b C'"),
    ("a\nb\n", r":1: expected a token and a tag column, found 1"),
    ("a O\n\nb B-PER\nc X-PER\n", r":4: tag 'X-PER' is neither O nor"),
    ("a O\nb I-\n", r":2: tag 'I-'"),
])
def test_format_errors_name_file_line_and_value(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=at(path) + message):
        read_conll(path, scheme="IOB2")


def test_bad_bytes_empty_files_and_bad_arguments(tmp_path):
    path = write(tmp_path, b"a O\n\nb\xff\xfe O\n")
    with pytest.raises(ValueError, match=at(path) + ":3: byte 0xff at column 2 is not valid utf-8"):
        read_conll(path)
    for text in ("", "\n\n", "-DOCSTART- -X- O O\n\n"):
        path = write(tmp_path, text)
        with pytest.raises(ValueError, match=at(path) + ": no sentences"):
            read_conll(path)
    path = write(tmp_path, "a B O\n")
    for column in (0, 3, -3, -4):
        with pytest.raises(ValueError, match=at(path) + f":1: tag_column={column} is not"):
            read_conll(path, tag_column=column)
    with pytest.raises(ValueError, match="give scheme too"):
        read_conll(path, strict=True)
    with pytest.raises(ValueError, match="unknown tag scheme 'BIO'"):
        read_conll(path, scheme="BIO")


@pytest.mark.parametrize("scheme, tags, line, message", [
    ("IOB2", ["O", "I-PER"], 2, "tag 'I-PER' cannot follow 'O' in IOB2"),
    ("IOB2", ["I-PER", "O"], 1, "tag 'I-PER' cannot start a sentence in IOB2"),
    ("IOB2", ["B-LOC", "I-PER"], 2, "tag 'I-PER' cannot follow 'B-LOC'"),
    ("IOB1", ["O", "B-PER"], 2, "tag 'B-PER' cannot follow 'O' in IOB1"),
    ("IOBES", ["B-PER", "O"], 2, "tag 'O' cannot follow 'B-PER' in IOBES"),
    ("IOBES", ["O", "E-PER"], 2, "tag 'E-PER' cannot follow 'O'"),
    ("IOBES", ["S-PER", "I-PER"], 2, "tag 'I-PER' cannot follow 'S-PER'"),
    ("IOBES", ["O", "B-PER", "I-PER"], 3, "tag 'I-PER' cannot end a sentence in IOBES"),
])
def test_strict_rejects_what_the_scheme_forbids(tmp_path, scheme, tags, line, message):
    path = write(tmp_path, "x O\n\n" + "".join(f"w {t}\n" for t in tags))
    read_conll(path, scheme=scheme)  # not strict: read as is
    with pytest.raises(ValueError, match=at(path) + f":{line + 2}: {message}"):
        read_conll(path, scheme=scheme, strict=True)


def test_convert_tags_by_hand():
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG"]
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG"]
    iobes = ["B-PER", "E-PER", "S-PER", "O", "S-LOC", "B-ORG", "E-ORG"]
    for (source, a), (target, b) in product([("IOB1", iob1), ("IOB2", iob2),
                                             ("IOBES", iobes)], repeat=2):
        assert convert_tags(a, source, target) == b, (source, target)
    assert convert_tags(["O", "I-PER", "B-LOC"], "IOB2", "IOB2") == ["O", "B-PER", "B-LOC"]
    assert convert_tags([], "IOB1", "IOBES") == []


@pytest.mark.parametrize("source, target", list(product(SCHEMES, repeat=2)))
def test_convert_tags_keeps_spans_and_writes_well_formed_tags(source, target):
    rng = random.Random(source + target)
    tags = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC") for p in SCHEMES[source]]
    for _ in range(200):
        seq = [rng.choice(tags) for _ in range(rng.randint(0, 8))]  # often ill-formed
        out = convert_tags(seq, source, target)
        assert entities(out, target) == entities(seq, source)
        bounded = ["O", *out, "O"]
        assert all(transition_allowed(a, b, target) for a, b in zip(bounded, bounded[1:]))
        assert convert_tags(convert_tags(out, target, source), source, target) == out


def test_detect_scheme():
    def sentences(*rows):
        return [Sentence(list(r), list(r), [list(r), list(r)]) for r in rows]
    assert detect_scheme(sentences(["I-PER", "I-PER", "O"], ["O", "I-LOC"])) == "IOB1"
    assert detect_scheme(sentences(["B-PER", "I-PER", "O"], ["B-LOC"])) == "IOB2"
    assert detect_scheme(sentences(["B-PER", "E-PER", "O"], ["S-LOC"])) == "IOBES"
    assert detect_scheme(sentences(["O", "O"])) == "IOB2"
    # one annotation error does not outvote the rest
    assert detect_scheme(sentences(["B-PER", "O"], ["B-LOC", "I-LOC"], ["O", "I-ORG"])) == "IOB2"
    with pytest.raises(ValueError, match="'U-PER'"):
        detect_scheme(sentences(["U-PER"]))


def test_load_user_ner_detects_and_converts(tmp_path):
    iob1 = "Peter I-PER\nBlackburn I-PER\n\nin O\nBonn I-LOC\n"
    files = [write(tmp_path, iob1, f"{split}.txt") for split in ("train", "val", "test")]
    data = load_user_ner(*files)
    assert sorted(data) == ["test", "train", "val"]
    assert data["train"][0].tags == ["B-PER", "E-PER"]
    assert data["train"][0].columns[1] == ["I-PER", "I-PER"]  # the file's tags, as read
    assert data["test"][1].tags == ["O", "S-LOC"]
    assert load_user_ner(*files, scheme_in="IOB1", scheme="IOB2")["val"][1].tags == [
        "O", "B-LOC"]
    with pytest.raises(FileNotFoundError, match="no file"):
        load_user_ner(files[0], files[1], tmp_path / "missing.txt")
    bad = write(tmp_path, "a O\nb Q-PER\n", "bad.txt")
    with pytest.raises(ValueError, match=at(bad) + ":2: tag 'Q-PER'"):
        load_user_ner(files[0], bad, files[2])


def test_conll2003_iob1_converts_to_the_iob2_release():
    """The MANIFEST's check: eng.* converted IOB1 -> IOB2 equal train/valid/test.txt in
    tokens, POS, chunk and NER tags."""
    for raw, released in (("eng.train", "train.txt"), ("eng.testa", "valid.txt"),
                          ("eng.testb", "test.txt")):
        ours = read_conll(shared_file("conll2003", raw), scheme="IOB1")
        theirs = read_conll(shared_file("conll2003", released), scheme="IOB2", strict=True)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert a.tokens == b.tokens and a.columns[1] == b.columns[1]
            assert convert_tags(a.columns[2], "IOB1", "IOB2") == b.columns[2]  # chunks
            assert convert_tags(a.tags, "IOB1", "IOB2") == b.tags


def test_strict_iob1_finds_the_b_misc_after_o_in_eng_train():
    """The first of two such slips in the original distribution, which load_ner tolerates."""
    with pytest.raises(ValueError, match=r"eng.train:152428: tag 'B-MISC' cannot follow 'O'"):
        read_conll(shared_file("conll2003", "eng.train"), scheme="IOB1", strict=True)


@pytest.mark.parametrize("name, sizes", [
    ("conll2003", {"train": (14041, 203621), "val": (3250, 51362), "test": (3453, 46435)}),
    ("wnut17", {"train": (3394, 62730), "val": (1009, 15733), "test": (1287, 23394)}),
])
def test_load_ner_has_the_official_counts_in_iobes(name, sizes):
    shared_file(name, "eng.testb" if name == "conll2003" else "emerging.dev.conll")
    data = load_ner(name)  # IOBES
    assert {k: (len(v), sum(len(s.tokens) for s in v)) for k, v in data.items()} == sizes
    for sentence in data["val"]:
        bounded = ["O", *sentence.tags, "O"]
        assert all(transition_allowed(a, b, "IOBES") for a, b in zip(bounded, bounded[1:]))
    with pytest.raises(ValueError, match="unknown NER dataset 'ontonotes'"):
        load_ner("ontonotes")
