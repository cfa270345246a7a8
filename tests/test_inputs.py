"""Property-based tests: every reader and predict path, fed random and malformed input, either
returns a result or raises one clear error naming the file (and the line where there is one).

The default profile tries a bounded number of inputs per test; ``--hypothesis-profile=slow``
(see conftest.py) tries many more.
"""
import json
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqkit.data.conll import read_conll
from seqkit.data.lm import LMData, read_text
from seqkit.data.music import read_rolls
from seqkit.data.parallel import read_aligned, read_jsonl_pairs, read_tsv_pairs
from seqkit.data.summarization import read_scitldr
from seqkit.data.text import read_labelled_jsonl, read_labelled_tsv
from seqkit.data.vocab import Vocab
from tests.helpers import layer, seq2seq

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
TEXTS = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@pytest.fixture(scope="module")
def classifier():
    from seqkit.models.classifier import SentenceClassifier

    vocab = Vocab.build([["good", "bad", "film"]])
    model = SentenceClassifier(len(vocab), 2, layer(bidirectional=True), embed_dim=8).eval()
    return model, {"vocab": vocab.state_dict(), "labels": ["0", "1"], "lower": True}


@given(texts=st.lists(TEXTS, min_size=1, max_size=4))
def test_classify_takes_any_text(classifier, texts):
    from seqkit.predict import classify

    rows = classify(*classifier, texts)
    assert [r["text"] for r in rows] == texts
    for r in rows:  # a blank text has no label; any other one a distribution
        assert (r["label"], r["probs"]) == (None, {}) if not r["text"].strip() else \
            abs(sum(r["probs"].values()) - 1) < 1e-3


@pytest.fixture(scope="module")
def tagger():
    from seqkit.data.ner import SentenceFeatures
    from seqkit.models.tagger import Tagger

    tags = ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
    features = SentenceFeatures(Vocab.build([["john", "runs"]]), Vocab.build([list("Johnruns")]),
                                Vocab(tags, pad=None, unk=None))
    model = Tagger(len(features.words), len(features.chars), tags, layer(bidirectional=True),
                   word_dim=8, case_dim=2, char_dim=4, char_features=6).eval()
    return model, {"features": features.state_dict(), "scheme": "IOBES"}


@given(texts=st.lists(TEXTS, min_size=1, max_size=4),
       tokenizer=st.sampled_from(["simple", "whitespace"]))
def test_tagging_takes_any_text(tagger, texts, tokenizer):
    from seqkit.predict import tag

    rows = tag(*tagger, texts, tokenizer)
    assert [r["text"] for r in rows] == texts
    for row in rows:
        assert len(row["tags"]) == len(row["tokens"])
        assert all(0 <= e["start"] < e["end"] <= len(row["tokens"]) for e in row["entities"])


@pytest.fixture(scope="module")
def summarizer():
    from seqkit.data.words import Words

    words = Words(Vocab.build([["a", "b", "c"]], specials=("<s>", "</s>")))
    V = len(words.vocab)
    model = seq2seq(V, V, hidden_size=8, attention="additive", copy=True,
                    share_embeddings=True, coverage=True).eval()
    return model, {"tokenizer": words.state_dict(), "max_src_len": 12, "beam_size": 2,
                   "decoding": {"max_len_a": 0.0, "max_len_b": 6}}


@given(texts=st.lists(TEXTS, min_size=1, max_size=3), beam=st.sampled_from([1, 2]))
def test_summarizing_takes_any_text(summarizer, texts, beam):
    from seqkit.predict import transduce

    outputs = transduce(*summarizer, texts, beam)
    assert len(outputs) == len(texts) and all("\n" not in o for o in outputs)
    assert all(o == "" for o, t in zip(outputs, texts) if not t.strip())


@pytest.fixture(scope="module")
def char_lm():
    from seqkit.models.lm import LanguageModel

    vocab = Vocab.build([list("abc \n")], pad=None)
    model = LanguageModel(len(vocab), layer(), embed_dim=8).eval()
    return model, {"level": "char", "vocab": vocab.state_dict()}


@given(prime=st.one_of(TEXTS, st.text(alphabet="abc \n", max_size=30)),  # any, or the model's
       length=st.integers(1, 20), seed=st.integers(0, 3),
       top_k=st.integers(0, 8), top_p=st.floats(0.05, 1.0))
def test_text_generation_takes_any_prime(char_lm, prime, length, seed, top_k, top_p):
    from seqkit.tasks.lm import generate_text

    vocab = Vocab.from_state_dict(char_lm[1]["vocab"])
    try:
        (text,) = generate_text(*char_lm, prime, length, seed=seed, top_k=top_k, top_p=top_p)
    except ValueError as e:  # only a character the model never saw is refused, by name
        assert "the prime has characters the model never saw" in str(e)
        assert any(c not in vocab for c in prime)
        return
    assert text.startswith(prime) and len(text) <= len(prime) + length
    assert "<unk>" not in text[len(prime):]


def test_lm_data_names_a_bad_user_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"good line\n\x80bad\n")
    with pytest.raises(ValueError, match=r"corpus.txt:2: byte 0x80"):
        LMData(dataset=None, files=str(path)).setup()


def test_json_values_of_the_wrong_type_are_named(tmp_path):
    path = tmp_path / "papers.jsonl"
    for row in ({"source": "A b.", "target": ["b"]}, {"source": [1, 2], "target": ["b"]},
                {"source": ["A b."], "target": [None]}):
        path.write_text(json.dumps(row) + "\n")
        with pytest.raises(ValueError, match=r"papers.jsonl:1: "):
            read_scitldr(path)
