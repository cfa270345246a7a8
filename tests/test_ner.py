"""The NER task end to end on tiny CoNLL files: tagger model, task, run folder, predict."""
import json
import random
import subprocess
import sys

import pytest
import torch

import seqkit
from seqkit.data.ner import NERData
from seqkit.models.tagger import Tagger
from seqkit.predict import load, tag
from seqkit.train import train
from tests.helpers import ROOT, layer, train_config

NAMES = {"PER": ["John", "Mary", "Smith", "Ahmed"], "LOC": ["Paris", "Berlin", "Kenya", "Ohio"]}
FILLER = ["the", "man", "went", "to", "see", "a", "game", "in", "with", "."]


@pytest.fixture(scope="module")
def conll_files(tmp_path_factory):
    """Sentences of filler words with one or two names (PER or LOC), in IOB2 columns."""
    folder, rng = tmp_path_factory.mktemp("conll"), random.Random(0)
    files = {}
    for split, n in (("train", 96), ("val", 24), ("test", 24)):
        lines = []
        for _ in range(n):
            words = []  # filler, a name, filler, maybe another name: names never touch
            for k in range(rng.randint(1, 2)):
                kind = rng.choice(sorted(NAMES))
                name = rng.sample(NAMES[kind], rng.randint(1, 2))
                words += [(w, "O") for w in rng.sample(FILLER, 2)]
                words += [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(name)]
            lines += [f"{w} X X {t}" for w, t in words + [(".", "O")]] + [""]
        files[split] = folder / f"{split}.conll"
        files[split].write_text("\n".join(lines))
    return files


def _tiny(files, *more):
    return ["task=ner", "data=ner_files", *(f"data.files.{k}={v}" for k, v in files.items()),
            "data.batch_size=16", "model.word_dim=16", "model.encoder.hidden_size=16",
            "model.char_features=8", "trainer.max_epochs=2", *more]


@pytest.mark.parametrize("crf, chars", [(True, "cnn"), (False, "lstm"), (True, None)])
def test_tagger_overfits_one_batch(conll_files, crf, chars):
    data = NERData(dataset=None, files={k: str(v) for k, v in conll_files.items()})
    data.setup()
    batch = next(iter(data.train_dataloader()))
    model = Tagger(**data.dims(), encoder=layer(hidden_size=16, bidirectional=True),
                   word_dim=16, char_encoder=chars, crf=crf,
                   dropout=0.0, word_dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    mask = torch.arange(batch["words"].size(1)) < batch["lengths"][:, None]
    for _ in range(60):
        scores = model(batch["words"], batch["cases"], batch["chars"], batch["lengths"])
        loss = model.loss(scores, batch["tags"], mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    scores = model(batch["words"], batch["cases"], batch["chars"], batch["lengths"])
    gold = [row[:n].tolist() for row, n in zip(batch["tags"], batch["lengths"].tolist())]
    assert model.decode(scores, mask) == gold


def test_ner_run_folder_scores_and_predict(tmp_path, conll_files):
    metrics = train(train_config(tmp_path, _tiny(conll_files, "trainer.max_epochs=20",
                                                 "module.optimizer.lr=0.02")))
    assert metrics["test/f1"] > 0.8
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"test/f1", "test/precision", "test/recall"} <= results.keys()
    table = (tmp_path / "entity_scores.md").read_text()
    assert "| PER |" in table and "| LOC |" in table
    model, artifacts = load(results["checkpoint"])
    (row,) = tag(model, artifacts, ["John Smith went to Paris ."])
    assert row["tokens"] == ["John", "Smith", "went", "to", "Paris", "."]
    assert {(e["type"], e["text"]) for e in row["entities"]} == {("PER", "John Smith"),
                                                                ("LOC", "Paris")}
    out = subprocess.run([sys.executable, "-m", "seqkit", "predict", results["checkpoint"],
                          "Mary went to Berlin", "--format", "conll"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:4] == ["Mary S-PER", "went O", "to O", "Berlin S-LOC"]
    tagger = seqkit.load(results["checkpoint"])  # the Python API gives what the CLI prints
    assert [r["tags"] for r in tagger.predict(["Mary went to Berlin"])] == [
        ["S-PER", "O", "O", "S-LOC"]]
    cli_rows = subprocess.run([sys.executable, "-m", "seqkit", "predict", results["checkpoint"],
                               "Mary went to Berlin", "John Smith"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120).stdout
    assert [json.loads(r) for r in cli_rows.splitlines()] == tagger.predict(
        ["Mary went to Berlin", "John Smith"])


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


def test_odd_char_lstm_width_builds():
    tagger = Tagger(10, 10, ["O", "S-PER"], layer(bidirectional=True), char_encoder="lstm",
                    char_features=25, word_dim=8)
    scores = tagger(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long),
                    torch.ones(2, 3, 4, dtype=torch.long), torch.tensor([3, 2]))
    assert scores.shape == (2, 3, 2)
