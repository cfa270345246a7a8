"""Vocab: order and specials, frequency and size limits, <unk>, its state dict."""
import json

import pytest

from seqkit.data import Vocab


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
