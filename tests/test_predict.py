"""Predicting from a checkpoint's model and artifacts, on raw text (seqkit.predict)."""
import torch

from seqkit.data.words import Words
from seqkit.predict import transduce
from tests.helpers import seq2seq


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
