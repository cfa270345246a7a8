"""What ``python train.py`` and ``seqkit`` promise around a run: one line and status 1 for a
user's error, sweeps that outlive a failing job, auto_resume of the same experiment only, run
folders that tell their story, files others can read, a run folder that cannot be written (or
a full disk) refused before training."""
import errno
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from seqkit import cli
from seqkit.data.cache import replace_atomically
from seqkit.train import train
from tests.helpers import ROOT, run_train_py, tiny_sentiment, train_config

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
QUIET = ["callbacks.progress_bar=null", "logger=csv"]


def _train_py(*args, cwd=ROOT, timeout=300):
    return run_train_py(*args, cwd=cwd, timeout=timeout, env=ENV)


def _errors(stderr: str) -> list[str]:
    """stderr's lines, Python's warnings (a path:line: message and its source line) aside."""
    lines = stderr.splitlines()
    return [line for i, line in enumerate(lines) if line.strip() and "Warning" not in line
            and not (".py:" in line and ": " in line.split(".py:", 1)[1])
            and not (i and "Warning" in lines[i - 1])]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "bad.tsv").write_text("text\tlabel\na film\n")
    (folder / "notes.ckpt").write_text("not a checkpoint\n")
    (folder / "a-file").write_text("")
    return folder


# train.py's table of bad input: overrides (a "{bad}" is the folder above), what stderr says
TRAIN_ROWS = {
    "no task": ([], "choose a task: python train.py task=<name>, one of lm, music"),
    "run folder under a file": (["hydra.run.dir={bad}/a-file/run"],
                                "cannot write to the run folder (hydra.run.dir)"),
    "run folder in /proc": (["hydra.run.dir=/proc/seqkit-run"], "cannot write to the run folder"),
    "missing config value": (["data.files.train=???"], "missing config value data.files.train"),
    "no train file": (["data.files.train=null"], "data.files.train is required"),
    "missing test file": (["data.files.test={bad}/none.tsv"], "no file {bad}/none.tsv"),
    "malformed data": (["data.files.train={bad}/bad.tsv"],
                       "{bad}/bad.tsv:2: expected 2 tab-separated columns"),
    "no GPU": (["trainer=gpu"], "this machine has no CUDA GPU"),
    "missing checkpoint": (["ckpt_path={bad}/none.ckpt"], "no checkpoint at {bad}/none.ckpt"),
    "not a checkpoint": (["ckpt_path={bad}/notes.ckpt"], "notes.ckpt: not a readable checkpoint"),
}


@pytest.fixture(scope="module")
def train_table(bad_files, tiny_files, tmp_path_factory):
    """Every row of TRAIN_ROWS run at once (each is a process of its own), and the last one
    again with --debug."""
    rows = {**TRAIN_ROWS, "--debug": (TRAIN_ROWS["not a checkpoint"][0] + ["--debug"], "")}

    def one(name):
        overrides, _ = rows[name]
        cwd = tmp_path_factory.mktemp("cwd")
        base = [] if name == "no task" else tiny_sentiment(tiny_files, *QUIET)
        run = [] if "hydra.run.dir" in " ".join(overrides) else [f"hydra.run.dir={cwd}/run"]
        return name, cwd, _train_py(*base, *run, *(o.format(bad=bad_files) for o in overrides),
                                    cwd=cwd)

    with ThreadPoolExecutor(4) as pool:
        return {name: (cwd, out) for name, cwd, out in pool.map(one, rows)}


@pytest.mark.parametrize("row", list(TRAIN_ROWS))
def test_train_py_gives_one_line_and_status_1_for_bad_input(row, train_table, bad_files):
    cwd, out = train_table[row]
    assert out.returncode == 1, out.stderr[-2000:]
    assert _errors(out.stderr) == [_errors(out.stderr)[0]], out.stderr[-3000:]
    assert _errors(out.stderr)[0].startswith("error: ")
    assert TRAIN_ROWS[row][1].format(bad=bad_files) in out.stderr
    if row == "no task":  # listing the tasks leaves no folder behind
        assert list(cwd.iterdir()) == []
    run = cwd / "run"
    if row in ("missing test file", "malformed data", "no GPU", "missing checkpoint"):
        # a run that fails keeps its reason: error.txt and the end of train.log
        reason = (run / "error.txt").read_text().strip()
        assert TRAIN_ROWS[row][1].format(bad=bad_files) in reason
        assert f"run failed: {reason}" in (run / "train.log").read_text()


def test_debug_shows_the_traceback(train_table):
    out = train_table["--debug"][1]
    assert out.returncode == 1 and "Traceback" in out.stderr and "CheckpointError" in out.stderr


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory, tiny_files):
    run = tmp_path_factory.mktemp("run")
    train(train_config(run, tiny_sentiment(tiny_files, "trainer.max_epochs=1")))
    return run


def _cli_fails(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([str(a) for a in args])
    message = str(exit_.value.code)
    assert len(message.splitlines()) == 1 and message.startswith("seqkit ")
    assert "Traceback" not in capsys.readouterr().err
    return message


# the seqkit command's table of bad input: arguments ({ckpt}, {run}, {bad}), what it says
CLI_ROWS = {
    "predict: no checkpoint": (["predict", "{bad}/none.ckpt", "x"], "no checkpoint at"),
    "predict: not a checkpoint": (["predict", "{bad}/notes.ckpt", "x"],
                                  "not a readable checkpoint"),
    "predict: no input": (["predict", "{ckpt}"], "no input"),
    "predict: no such file": (["predict", "{ckpt}", "--file", "{bad}/none.txt"], "no file"),
    "predict --beam to a classifier": (["predict", "{ckpt}", "x", "--beam", "2"],
                                       "--beam: not an option of a sentiment model"),
    "predict --format conll to a classifier": (["predict", "{ckpt}", "x", "--format", "conll"],
                                               "--format: not an option of a sentiment model"),
    "predict --batch-size 0": (["predict", "{ckpt}", "x", "--batch-size", "0"],
                               "--batch-size must be at least 1, got 0"),
    "generate: a classifier": (["generate", "{ckpt}"], "does not generate"),
    "generate --frames -5": (["generate", "{ckpt}", "--frames", "-5"],
                             "--frames must be at least 1, got -5"),
    "generate --samples 0": (["generate", "{ckpt}", "--samples", "0"], "--samples must be"),
    "generate --length 0": (["generate", "{ckpt}", "--length", "0"], "--length must be"),
    "generate --top-p 2": (["generate", "{ckpt}", "--top-p", "2"], "--top-p must be in (0, 1]"),
    "generate --temperature 0": (["generate", "{ckpt}", "--temperature", "0"],
                                 "--temperature must be above 0"),
    "export --out a file": (["export", "{ckpt}", "--out", "{bad}/a-file"],
                            "--out {bad}/a-file is a file, not a folder"),
    "export --out unwritable": (["export", "{ckpt}", "--out", "{bad}/a-file/x"],
                                "{bad}/a-file/x: Not a directory"),
    "gates --out unwritable": (["gates", "{ckpt}", "good", "--out", "{bad}/a-file/g.png"],
                               "{bad}/a-file: File exists"),
    "gates --out a folder": (["gates", "{ckpt}", "good", "--out", "{bad}"], "is a folder"),
    "gates --layer 3": (["gates", "{ckpt}", "good", "--layer", "3"], "--layer must be in"),
    "evaluate: no config": (["evaluate", "{ckpt}", "--config", "{bad}/none.yaml"],
                            "no run config"),
    "evaluate --out unwritable": (["evaluate", "{ckpt}", "--out", "{bad}/a-file/e"],
                                  "Not a directory"),
    "evaluate: unknown key": (["evaluate", "{ckpt}", "data.no_such_key=1"],
                              "unexpected keyword argument 'no_such_key'"),
}


@pytest.mark.parametrize("row", list(CLI_ROWS))
def test_the_seqkit_command_gives_one_line_and_status_1_for_bad_input(row, sentiment_run,
                                                                      bad_files, capsys):
    args, message = CLI_ROWS[row]
    names = {"ckpt": sentiment_run / "checkpoints/last.ckpt", "run": sentiment_run,
             "bad": bad_files}
    assert message.format(**names) in _cli_fails([a.format(**names) for a in args], capsys)


def test_evaluate_on_a_read_only_run_folder_is_one_line(sentiment_run, monkeypatch, capsys):
    """(Root writes into a read-only folder, so the refusal is the file system's, faked.)"""
    real = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self.parent == sentiment_run:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    message = _cli_fails(["evaluate", sentiment_run / "checkpoints/last.ckpt"], capsys)
    assert f"{sentiment_run}/eval-test: Permission denied" in message


def test_evaluate_reads_only_the_split_it_scores_from_anywhere(tmp_path, tiny_files, capsys,
                                                               monkeypatch):
    """Relative data paths are stored absolute; the training file is not needed to score."""
    data = tmp_path / "data"
    data.mkdir()
    for split, path in tiny_files.items():
        (data / f"{split}.tsv").write_bytes(path.read_bytes())
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    metrics = train(train_config(run, tiny_sentiment({s: f"data/{s}.tsv" for s in tiny_files})))
    config = (run / "config.yaml").read_text()
    assert f"train: {data}/train.tsv" in config
    (data / "train.tsv").unlink()
    monkeypatch.chdir(ROOT)
    cli.main(["evaluate", str(run / "checkpoints/last.ckpt")])
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["test/acc"] == pytest.approx(
        metrics["test/acc"])


def test_train_and_val_without_a_test_split(tmp_path, tiny_files):
    files = {k: v for k, v in tiny_files.items() if k != "test"}
    metrics = train(train_config(tmp_path, tiny_sentiment(files)))
    assert "val/acc" in metrics and not any(k.startswith("test/") for k in metrics)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "results.json").exists()


def _without_train(files: dict) -> dict:
    return {k: v for k, v in files.items() if k != "train"}


def test_a_sweep_outlives_a_failing_job(tiny_files, bad_files, tmp_path):
    good = tiny_files["train"]
    out = _train_py("-m", *tiny_sentiment(_without_train(tiny_files), *QUIET,
                                          "trainer.max_epochs=1"),
                    f"data.files.train={good},{bad_files}/bad.tsv,{good}",
                    f"hydra.sweep.dir={tmp_path}", cwd=tmp_path)
    assert out.returncode == 1
    assert f"{bad_files}/bad.tsv:2: expected 2 tab-separated columns" in out.stderr
    jobs = json.loads((tmp_path / "summary.json").read_text())
    assert [j["status"] for j in jobs] == ["completed", "failed", "completed"]
    assert "bad.tsv:2" in jobs[1]["error"] and "bad.tsv:2" in (tmp_path / "1/error.txt").read_text()
    for job in (0, 2):
        assert json.loads((tmp_path / str(job) / "results.json").read_text())["test/acc"] >= 0


OPTUNA = """# @package _global_
defaults:
  - override /hydra/sweeper: optuna
optimized_metric: val/acc
hydra:
  mode: MULTIRUN
  sweeper:
    direction: maximize
    n_trials: 3
    max_failure_rate: 1.0
    sampler:  # this seed draws good, good, bad
      _target_: optuna.samplers.TPESampler
      seed: 6
      n_startup_trials: 10
    params:
      data.files.train: choice({good}, {bad})
"""


def test_an_optuna_search_with_a_failing_trial_completes(tiny_files, bad_files,
                                                         tmp_path):
    configs = tmp_path / "configs" / "hparams_search"
    configs.mkdir(parents=True)
    (configs / "failing.yaml").write_text(OPTUNA.format(good=tiny_files["train"],
                                                        bad=f"{bad_files}/bad.tsv"))
    out = _train_py("--config-dir", str(tmp_path / "configs"), "hparams_search=failing",
                    *tiny_sentiment(_without_train(tiny_files), *QUIET, "trainer.max_epochs=1",
                                    "test=false"),
                    f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    jobs = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert [j["status"] for j in jobs] == ["completed", "completed", "failed"], out.stderr
    assert "bad.tsv:2" in next(j["error"] for j in jobs if j["status"] == "failed")
    assert "best_value" in (tmp_path / "sweep" / "optimization_results.yaml").read_text()
    assert out.returncode == 1 and "1 of 3 jobs failed" in out.stderr


def test_auto_resume_continues_only_the_same_experiment(tmp_path, tiny_files):
    runs = tmp_path / "runs"
    old = runs / "old"
    train(train_config(old, tiny_sentiment(tiny_files, "trainer.max_epochs=1",
                                           "test=false")))  # unfinished
    record = {p: p.read_bytes() for p in [old / "config.yaml", old / "checkpoints/last.ckpt"]}
    other_data = tmp_path / "other.tsv"
    other_data.write_text(tiny_files["train"].read_text().replace("the film", "this film"))
    for name, change in [("data", [f"data.files.train={other_data}"]),
                         ("model", ["model/encoder=gru", "model.encoder.hidden_size=8"])]:
        train(train_config(runs / name, tiny_sentiment(tiny_files, "auto_resume=true", *change)))
        assert (runs / name / "results.json").is_file()  # a run of its own, from scratch
        start = torch.load(runs / name / "checkpoints/last.ckpt", weights_only=True)
        assert start["global_step"] == 2 * 4  # two epochs of its own, none of the old run's
        assert {p: p.read_bytes() for p in record} == record  # the old run untouched
    with pytest.raises(ValueError, match=r"auto_resume: the run folder .*old holds a run "
                                         r"configured otherwise \(model.encoder._target_"):
        train(train_config(old, tiny_sentiment(tiny_files, "auto_resume=true",
                                               "model/encoder=gru")))
    assert {p: p.read_bytes() for p in record} == record


def test_the_run_folder_tells_the_story_of_a_run(tmp_path, tiny_files):
    """train.log: the epochs' metrics, early stopping; an interruption, then a resume that
    logs into the run it continues and leaves no folder of its own."""
    run = tmp_path / "run"
    stopped = _train_py(*tiny_sentiment(tiny_files, *QUIET, "trainer.max_epochs=5",
                                        "callbacks.early_stopping.patience=1",
                                        "+callbacks.early_stopping.min_delta=10"),
                        f"hydra.run.dir={run}")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    log = (run / "train.log").read_text()
    assert "epoch 0: " in log and "val/acc" in log and "train/loss" in log
    assert "stopped at epoch 1: val/acc did not improve for 1 epochs" in log
    # the known noise stays out (train() quiets it): a deprecation inside Lightning, the
    # logging-interval warning of short epochs, an advertisement
    assert "LeafSpec" not in stopped.stderr and "logging interval" not in stopped.stderr
    assert "Tip" not in log and "FLOPs" not in stopped.stdout + log  # nor a column of zeros
    assert re.search(r"model: SentenceClassifier, [\d,]+ parameters \([\d,]+ trainable\)", log)
    assert "GPU available" in log and re.search(r"\] - test: .*test/acc 0\.\d+", log)  # Lightning's lines, the test's

    paced = tmp_path / "paced"
    overrides = [*tiny_sentiment(tiny_files, *QUIET, "trainer.max_epochs=4", "seed=5"),
                 "+callbacks.pace._target_=tests.helpers.Pace", "+callbacks.pace.seconds=0.2"]
    command = [sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={paced}"]
    # (a job started in the background inherits SIGINT ignored: Ctrl-C's default comes back)
    victim = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, preexec_fn=lambda: signal.signal(
                                  signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (paced / "checkpoints/last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGINT)
    victim.wait(timeout=60)
    assert "interrupted at epoch" in (paced / "train.log").read_text()
    assert not (paced / "results.json").exists()
    again = _train_py(*overrides, "auto_resume=true", f"hydra.run.dir={tmp_path / 'new'}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert not (tmp_path / "new").exists()  # it logged into the run it continued
    log = (paced / "train.log").read_text()
    assert f"auto_resume: continuing {paced}" in log and "resumed from" in log
    assert "epoch 3: " in log and (paced / "results.json").is_file()


@pytest.fixture
def umask():
    def set_(mask):
        previous.append(os.umask(mask))
    previous = []
    yield set_
    os.umask(previous[0])


def test_files_get_the_users_umask(tmp_path, tiny_files, umask):
    umask(0o022)
    train(train_config(tmp_path / "run", tiny_sentiment(tiny_files, "trainer.max_epochs=1")))
    from seqkit.export import export

    export(tmp_path / "run/checkpoints/last.ckpt", tmp_path / "exported")
    written = [*(tmp_path / "run/checkpoints").iterdir(), tmp_path / "run/results.json",
               *(tmp_path / "exported").iterdir()]  # .ts, .onnx, .json
    assert {p.suffix for p in written} == {".ckpt", ".json", ".ts", ".onnx"}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {
        p.name: "0o644" for p in written}
    umask(0o077)  # a private umask is kept too
    path = replace_atomically(tmp_path / "x.bin", lambda tmp: Path(tmp).write_bytes(b"x"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_unwritable_run_folder_or_a_full_disk_fails_before_training(tmp_path, tiny_files,
                                                                       monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write to the run folder .*a-file/run"):
        train(train_config(blocker / "run", tiny_sentiment(tiny_files)))
    import seqkit.train

    monkeypatch.setattr(seqkit.train.shutil, "disk_usage",
                        lambda path: type("Usage", (), {"free": 1024})())
    with pytest.raises(ValueError, match=r"has 0\.0 MiB free; this model's checkpoints need"):
        train(train_config(tmp_path / "full", tiny_sentiment(tiny_files)))
    assert not (tmp_path / "full" / "checkpoints").exists()
