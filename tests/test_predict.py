"""Predicting from a checkpoint's model and artifacts, on raw text (seqkit.predict): an unknown
word copied back as text; property-based, any text classified, tagged or summarized without
an error.

The default profile tries a bounded number of inputs per test; ``--hypothesis-profile=slow``
(see conftest.py) tries many more.
"""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from seqkit.data.vocab import Vocab
from seqkit.data.words import Words
from seqkit.predict import transduce
from tests.helpers import layer, seq2seq


def test_an_unknown_source_word_is_generated_and_comes_back_as_text():
    words = Words.learn(["a b c"], ["a b"], min_freq=1)
    model = seq2seq(len(words.vocab), len(words.vocab), attention="additive",
                    share_embeddings=True, copy=True).eval()
    with torch.no_grad():
        model.generator.gen.weight.zero_()
        model.generator.gen.bias.fill_(-1e4)  # copy only: the one source word is all there is
    artifacts = {"tokenizer": words.state_dict(), "decoding": {"max_len_a": 0, "max_len_b": 2}}
    assert transduce(model, artifacts, ["Quokka", ""], beam_size=1) == ["quokka quokka", ""]
    assert transduce(model, artifacts, ["Quokka"], beam_size=3) == ["quokka quokka"]


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
