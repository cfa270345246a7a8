"""Property-based tests: every reader of seqkit.data, fed random and malformed files, either
returns a result or raises one clear error naming the file (and the line where there is one).
(The predict paths' property tests: test_predict.py, tasks/test_lm.py.)

The default profile tries a bounded number of inputs per test; ``--hypothesis-profile=slow``
(see conftest.py) tries many more.
"""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqkit.data.conll import read_conll
from seqkit.data.lm import read_text
from seqkit.data.music import read_rolls
from seqkit.data.parallel import read_aligned, read_jsonl_pairs, read_tsv_pairs
from seqkit.data.summarization import read_scitldr
from seqkit.data.text import read_labelled_jsonl, read_labelled_tsv

FIXTURES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

# pieces that make lines look like the formats, so inputs get past the first check
TOKENS = st.sampled_from(["word", "The", "O", "B-PER", "I-PER", "E-LOC", "S-ORG", "I-", "-",
                          "-DOCSTART-", "\t", " ", "  ", "label", "text", "src", "tgt", "1",
                          "0", '{"text": "a b", "label": "1"}', '{"src": "x", "tgt": "y"}',
                          '{"source": ["A b."], "target": ["b"]}', '{"source": "A", "target": 3}',
                          "{", "}", "[", "]", '"', ",", ":", "null", "é", "\u00a0", "\ufeff"])
LINES = st.lists(st.lists(TOKENS, max_size=6).map("".join), max_size=12)
BYTES = st.one_of(
    LINES.map(lambda lines: "\n".join(lines).encode()),
    st.tuples(LINES, st.binary(max_size=8)).map(
        lambda p: "\n".join(p[0]).encode() + p[1] + b"\nword O\n"),
    st.binary(max_size=64))


def _clear(error: Exception, path) -> None:
    """One line that names the file (and, where it gives a line number, a real one)."""
    message = str(error)
    assert path.name in message, message
    assert "\n" not in message.strip(), message
    for number in re.findall(re.escape(path.name) + r":(\d+)", message):
        assert int(number) >= 1, message


def _read(reader, path, *args, **kwargs):
    try:
        return reader(path, *args, **kwargs)
    except (ValueError, FileNotFoundError) as e:
        _clear(e, path)
        return None


READERS = {
    "conll": lambda p: read_conll(p),
    "conll_iobes_strict": lambda p: read_conll(p, scheme="IOBES", strict=True),
    "conll_two_columns": lambda p: read_conll(p, tag_column=1),
    "labelled_tsv": lambda p: read_labelled_tsv(p, "text", "label"),
    "labelled_tsv_no_header": lambda p: read_labelled_tsv(p, 0, 1, header=False),
    "labelled_jsonl": read_labelled_jsonl,
    "tsv_pairs": read_tsv_pairs,
    "jsonl_pairs": read_jsonl_pairs,
    "scitldr": read_scitldr,
    "lm_text": read_text,
}


@pytest.mark.parametrize("name", sorted(READERS))
@FIXTURES
@given(content=BYTES)
def test_text_readers_return_a_result_or_name_the_file(name, content, tmp_path):
    path = tmp_path / f"input-{name}.txt"
    path.write_bytes(content)
    result = _read(READERS[name], path)
    assert result is None or isinstance(result, (list, str))


@FIXTURES
@given(src=BYTES, tgt=BYTES)
def test_aligned_text_pairs_return_a_result_or_name_a_file(src, tgt, tmp_path):
    a, b = tmp_path / "a.de", tmp_path / "b.en"
    a.write_bytes(src)
    b.write_bytes(tgt)
    try:
        pairs = read_aligned(a, b)
    except (ValueError, FileNotFoundError) as e:
        assert "a.de" in str(e) or "b.en" in str(e), str(e)
    else:
        assert pairs and all(src and tgt for src, tgt in pairs)


ROLLS = st.one_of(
    st.binary(max_size=64),  # not a MIDI / numpy file at all
    st.builds(lambda t, k, v: np.full((t, k), v), st.integers(0, 5), st.sampled_from([88, 87, 3]),
              st.sampled_from([0, 1, 2, 0.5, np.nan])),
    st.builds(lambda shape: np.zeros(shape), st.sampled_from([(4,), (2, 88, 1), (0, 88)])))


@FIXTURES
@given(roll=ROLLS, suffix=st.sampled_from([".mid", ".npy", ".npz", ".midi"]))
def test_piano_roll_and_midi_readers_return_rolls_or_name_the_file(roll, suffix, tmp_path):
    path = tmp_path / f"piece{suffix}"
    if isinstance(roll, bytes):
        path.write_bytes(roll)
    elif suffix == ".npz":
        np.savez(path, roll)
    elif suffix == ".npy":
        np.save(path, roll)
    else:
        path.write_bytes(roll.tobytes())
    rolls = _read(read_rolls, path)
    if rolls is not None:
        assert all(r.ndim == 2 and r.shape[1] == 88 and set(np.unique(r)) <= {0, 1}
                   for r in rolls)


# -- predict paths ---------------------------------------------------------------------------
