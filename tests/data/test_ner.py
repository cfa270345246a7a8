"""NER data: pretrained vectors initialise the word embedding, singletons become <unk> in
training draws only."""
import pytest
import torch

from seqkit.data.ner import NERData
from seqkit.models.tagger import Tagger
from tests.helpers import layer


def test_pretrained_vectors_initialise_the_word_embedding(tmp_path, conll_files):
    glove = tmp_path / "vectors.txt"
    glove.write_text("john 0.5 -1.0 2.0\nparis 1.5 0.25 -3.0\nunseenword 9 9 9\n")
    data = NERData(dataset=None, files={k: str(v) for k, v in conll_files.items()},
                   vectors=str(glove))
    data.setup()
    model = Tagger(**data.dims(), encoder=layer(bidirectional=True), word_dim=3)
    data.init_model(model)
    words = data.features.words
    assert model.words.weight[words["john"]].tolist() == [0.5, -1.0, 2.0]
    assert model.words.weight[words["paris"]].tolist() == [1.5, 0.25, -3.0]
    assert "unseenword" in words  # words of the vectors file join the vocabulary
    with pytest.raises(ValueError, match="word_dim"):
        data.init_model(Tagger(**data.dims(), encoder=layer(bidirectional=True), word_dim=4))
    bad = tmp_path / "bad.txt"
    bad.write_text("john 0.5 x 2.0\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1"):
        NERData(dataset=None, files={k: str(v) for k, v in conll_files.items()},
                vectors=str(bad)).setup()


def test_singletons_become_unk_in_training_draws_only(tmp_path):
    files = {}
    for split in ("train", "val", "test"):  # Zorba and Mary once, John and met twice
        files[split] = tmp_path / f"{split}.conll"
        files[split].write_text("Zorba B-PER\nmet O\nJohn B-PER\n\nJohn B-PER\nmet O\nMary B-PER\n")

    def data(p):
        module = NERData(dataset=None, files={k: str(v) for k, v in files.items()},
                         singleton_unk=p)
        module.setup()
        return module

    always = data(1.0)
    words = always.features.words
    drawn = always.split_dataset("train")
    assert [[words.itos[i] for i in drawn[k]["words"]] for k in (0, 1)] == [
        ["<unk>", "met", "john"], ["john", "met", "<unk>"]]
    assert [words.itos[i] for i in always.splits["val"][0]["words"]] == ["zorba", "met", "john"]
    assert torch.equal(drawn[0]["chars"], always.splits["train"][0]["chars"])
    half = data(0.5).split_dataset("train")
    torch.manual_seed(0)
    unk = torch.stack([half[0]["words"] == words.unk_index for _ in range(400)]).float().mean(0)
    assert 0.4 < unk[0] < 0.6 and unk[1:].sum() == 0
    never = data(0.0)
    assert never.split_dataset("train") is never.splits["train"]
