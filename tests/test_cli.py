"""The ``seqkit`` command: help for every subcommand, predict and evaluate, errors a user can
act on."""
import json
import subprocess
import sys

import pytest

import seqkit
from seqkit import cli
from seqkit.train import train
from tests.helpers import ROOT, tiny_sentiment, train_config

COMMANDS = ("predict", "generate", "evaluate", "bench", "gates", "export")


def _seqkit(*args, **kw):
    return subprocess.run([sys.executable, "-m", "seqkit", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, **kw)


def test_help_lists_every_command_and_each_has_its_own(capsys):
    out = _seqkit("--help")
    assert out.returncode == 0
    assert all(c in out.stdout for c in COMMANDS)
    options = ("--beam", "--top-p", "--split", "{data,peers,rnn,translation}", "--backward",
               "--format")
    for command, option in zip(COMMANDS, options):
        with pytest.raises(SystemExit) as exit_:
            cli.main([command, "--help"])
        assert exit_.value.code == 0 and option in capsys.readouterr().out
    helps = {c: _seqkit(c, "--help").stdout for c in ("generate", "evaluate")}
    assert "--wav" in helps["generate"] and "--prime" in helps["generate"]
    assert "overrides" in helps["evaluate"]


def test_no_command_or_an_unknown_one_is_a_usage_error():
    assert _seqkit().returncode == 2
    out = _seqkit("translate")
    assert out.returncode == 2 and "invalid choice" in out.stderr


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory, tiny_files):
    run = tmp_path_factory.mktemp("run")
    metrics = train(train_config(run, tiny_sentiment(tiny_files, "trainer.max_epochs=2")))
    return run, metrics


def test_evaluate_scores_the_checkpoint_as_the_run_did(sentiment_run, capsys):
    run, metrics = sentiment_run
    ckpt = json.loads((run / "results.json").read_text())["checkpoint"]
    cli.main(["evaluate", ckpt, "--split", "test"])
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["test/acc"] == pytest.approx(metrics["test/acc"])
    assert json.loads((run / "eval-test" / "scores.json").read_text()) == scores
    cli.main(["evaluate", ckpt, "--split", "val", "data.batch_size=4", "--out",
              str(run / "ev")])
    assert "val/acc" in json.loads((run / "ev" / "scores.json").read_text())


def test_wrong_checkpoints_and_inputs_get_one_clear_line(sentiment_run, tmp_path):
    run, _ = sentiment_run
    ckpt = str(run / "checkpoints" / "last.ckpt")
    cases = [(("predict", str(tmp_path / "none.ckpt"), "x"), "no checkpoint at"),
             (("generate", ckpt), "does not generate: use seqkit predict"),
             (("predict", ckpt, "--file", str(tmp_path / "none.txt")), "no file"),
             (("predict", ckpt), "no input"),
             (("evaluate", ckpt, "--config", str(tmp_path / "c.yaml")), "no run config")]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\n\xff\n")
    cases.append((("predict", ckpt, "--file", str(bad)), "bad.txt:2: byte 0xff"))
    for args, message in cases:
        out = _seqkit(*args)
        assert out.returncode == 1 and message in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr


def test_gates_plots_the_encoder_over_a_text(sentiment_run, tmp_path, capsys):
    run, _ = sentiment_run
    ckpt = str(run / "checkpoints" / "last.ckpt")
    cli.main(["gates", ckpt, "the film is good", "--out", str(tmp_path / "g.png"),
              "--backward"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 5000
    with pytest.raises(SystemExit, match="--layer must be in"):
        cli.main(["gates", ckpt, "good", "--layer", "3"])


def test_predict_command_reads_arguments_files_and_stdin(tmp_path, tiny_files):
    train(train_config(tmp_path, tiny_sentiment(tiny_files, "trainer.max_epochs=1", "test=false")))
    ckpt = str(tmp_path / "checkpoints" / "last.ckpt")
    cmd = [sys.executable, "-m", "seqkit", "predict", ckpt]
    lines = tmp_path / "in.txt"
    lines.write_text("the film is good\n\nthe film is bad\n")
    for extra, stdin in (([ "the film is good"], None), (["--file", str(lines)], None),
                         (["--file", "-"], "the film is dull\n")):
        out = subprocess.run(cmd + extra, input=stdin, capture_output=True, text=True,
                             cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        labels = [r["label"] for r in rows]  # one row per line, a blank one included
        if extra[0] == "--file" and stdin is None:
            assert len(rows) == 3 and labels[1] is None and rows[1]["probs"] == {}
            labels = labels[::2]
        assert labels and all(label in ("0", "1") for label in labels)
        texts = (extra if extra[0] != "--file" else
                 (lines.read_text() if stdin is None else stdin).splitlines())
        assert seqkit.load(ckpt).predict(texts) == rows  # the Python API: what the CLI prints


def test_typed_text_gets_the_prediction_of_its_words(sentiment_run):
    """The default (simple) tokenizer splits "great!" and "Great." as the training text was
    split, so they are classified as "great" is; split on whitespace alone, "great!" is an
    unknown word, no better than nonsense."""
    run, _ = sentiment_run
    clf = seqkit.load(run / "checkpoints" / "last.ckpt")
    assert clf.artifacts["tokenizer"] == "simple"
    rows = clf.predict(["great!", "Great.", "great", "GREAT", "zzz"])
    assert [r["label"] for r in rows[:4]] == ["1"] * 4
    assert min(r["probs"]["1"] for r in rows[:4]) > rows[4]["probs"]["1"]
    clf.artifacts["tokenizer"] = "whitespace"
    assert clf.predict(["great!"])[0]["probs"] == clf.predict(["zzz"])[0]["probs"]
