"""The NER task end to end on tiny CoNLL files: run folder, entity scores, predict."""
import json
import subprocess
import sys

import seqkit
from seqkit.predict import load, tag
from seqkit.train import train
from tests.helpers import ROOT, train_config


def _tiny(files, *more):
    return ["task=ner", "data=ner_files", *(f"data.files.{k}={v}" for k, v in files.items()),
            "data.batch_size=16", "model.word_dim=16", "model.encoder.hidden_size=16",
            "model.char_features=8", "trainer.max_epochs=2", *more]


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
