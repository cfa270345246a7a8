"""Exact resume: a resumed run (after a SIGKILL too) ends as an uninterrupted one, and the
pieces that make it so: the scheduler's steps, the logger's step in a checkpoint. (Each
epoch's order: data/test_sampler.py.)"""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from functools import partial

import pytest
import torch

from seqkit.checkpoint import CheckpointError
from seqkit.resume import logged_steps
from seqkit.train import train
from tests.helpers import ROOT, tiny_sentiment, tiny_translation, train_config


def _column(run, key: str) -> list[float]:
    with open(run / "csv" / "metrics.csv") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def test_a_plateau_scheduler_steps_once_an_epoch_on_its_score_before_the_checkpoint(
        tmp_path, tiny_files):
    train(train_config(tmp_path, tiny_sentiment(
        tiny_files, "trainer.max_epochs=3", "test=false", "monitor=val/loss", "mode=min",
        "module.scheduler.patience=0", "+module.scheduler.threshold=0.5")))  # most epochs are bad
    replay = torch.optim.lr_scheduler.ReduceLROnPlateau(
        torch.optim.SGD([torch.zeros(1)], lr=0.001), mode="min", factor=0.5, patience=0,
        threshold=0.5)
    rates = []
    for score in _column(tmp_path, "val/loss"):  # each epoch's logged score, by hand
        rates.append(replay.optimizer.param_groups[0]["lr"])
        replay.step(score)
    assert _column(tmp_path, "lr-Adam") == pytest.approx(rates) and len(rates) == 3
    assert rates[-1] < rates[0]  # the test does reduce the rate
    state = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)["lr_schedulers"][0]
    # written at the end of the third epoch, after its step
    assert (state["last_epoch"], state["best"], state["num_bad_epochs"]) == (
        3, replay.best, replay.num_bad_epochs)


def test_another_scheduler_steps_once_an_epoch_with_or_without_validation(tmp_path, tiny_files):
    train(train_config(tmp_path, tiny_sentiment(
        tiny_files, "trainer.max_epochs=3", "test=false", "trainer.check_val_every_n_epoch=2",
        "~module.scheduler", "+module.scheduler={_target_:torch.optim.lr_scheduler.ExponentialLR,"
        "_partial_:true,gamma:0.5}")))
    assert _column(tmp_path, "lr-Adam") == pytest.approx([1e-3, 5e-4, 2.5e-4])
    state = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)["lr_schedulers"][0]
    assert state["last_epoch"] == 2  # written when the second epoch's validation ended


def test_without_configured_callbacks_a_resumed_run_is_exact(tmp_path, tiny_files):
    tiny = partial(tiny_sentiment, tiny_files, "seed=3")
    straight = train(train_config(tmp_path / "a", tiny("callbacks=none")))
    train(train_config(tmp_path / "b", tiny("trainer.max_epochs=1", "test=false")))  # has last.ckpt
    resumed = train(train_config(tmp_path / "c", tiny(
        "callbacks=none", f"ckpt_path={tmp_path / 'b/checkpoints/last.ckpt'}")))
    for key in ("val/loss", "test/loss", "test/acc"):
        assert resumed[key] == straight[key], key


def test_the_loggers_step_is_read_from_a_checkpoint_or_its_absence_is_an_error(tmp_path,
                                                                               tiny_files):
    train(train_config(tmp_path, tiny_sentiment(tiny_files, "trainer.max_epochs=1", "test=false")))
    last = tmp_path / "checkpoints" / "last.ckpt"
    with open(tmp_path / "csv" / "metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert logged_steps(last) == max(steps) + 1 == 4  # one epoch of four batches
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] == 4
    del ckpt["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"]
    torch.save(ckpt, tmp_path / "moved.ckpt")  # a Lightning that keeps it elsewhere
    with pytest.raises(CheckpointError, match=r"moved.ckpt: its loops hold no fit_loop/"
                                              r"epoch_loop.state_dict/_batches_that_stepped"):
        logged_steps(tmp_path / "moved.ckpt")
    del ckpt["loops"]
    torch.save(ckpt, tmp_path / "weights.ckpt")
    assert logged_steps(tmp_path / "weights.ckpt") == 0


@pytest.mark.parametrize("callbacks, how, schedule", [
    ("default", "auto_resume", ()), ("ema", "auto_resume", ()), ("default", "ckpt_path", ()),
    # its length stays 2 epochs while the first part runs 1: a run resumed with another length
    # would be another schedule, a run configured otherwise
    ("default", "auto_resume", ("scheduler=warmup", "module.scheduler.max_epochs=2"))])
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, tiny_files, callbacks,
                                                            how, schedule):
    tiny = partial(tiny_sentiment, tiny_files, "seed=3", f"callbacks={callbacks}", *schedule)
    straight = train(train_config(tmp_path / "a", tiny()))
    train(train_config(tmp_path / "b", tiny("trainer.max_epochs=1", "test=false")))
    again = ("auto_resume=true" if how == "auto_resume" else
             f"ckpt_path={tmp_path / 'b/checkpoints/last.ckpt'}")
    resumed = train(train_config(tmp_path / "c", tiny(again)))  # a new Hydra folder: b continues
    assert json.loads((tmp_path / "b/results.json").read_text())["checkpoint"].startswith(
        str(tmp_path / "b/checkpoints/best-epoch"))
    a = torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=False)
    b = torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == 8
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], atol=0, rtol=0, msg=key)
    assert a["optimizer_states"][0]["state"][0]["step"] == b["optimizer_states"][0]["state"][0][
        "step"]
    assert a["lr_schedulers"] == b["lr_schedulers"]  # a warmup is a SequentialLR: its parts too
    assert a["lr_schedulers"][0]["last_epoch"] == 2  # stepped once an epoch
    assert straight["test/acc"] == resumed["test/acc"]
    if callbacks == "ema":  # the checkpoint holds the average; training resumed the raw weights
        assert any((a["current_model_state"][k] != v).any() for k, v in a["state_dict"].items())
        for key, value in a["current_model_state"].items():
            torch.testing.assert_close(value, b["current_model_state"][key], atol=0, rtol=0)


def _command(overrides, run, *more):
    return [sys.executable, "train.py", *overrides, "seed=5", "trainer.max_epochs=8",
            "logger=csv", "callbacks.progress_bar=null", f"hydra.run.dir={run}",
            f"paths.output_dir={run}", "+callbacks.pace._target_=tests.helpers.Pace",
            "+callbacks.pace.seconds=0.1", *more]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("task", ["sentiment", pytest.param("translation",
                                                             marks=pytest.mark.slow)])
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(task, tmp_path, tiny_files,
                                                                    parallel_corpus):
    """Translation reads its training pairs from a token store: the resumed run maps the
    store the killed one built."""
    overrides = (tiny_sentiment(tiny_files) if task == "sentiment" else
                 tiny_translation(parallel_corpus, "module.num_heatmaps=0"))
    straight = subprocess.run(_command(overrides, tmp_path / "a"), cwd=ROOT, env=_env(),
                              capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]
    run = tmp_path / "b"
    victim = subprocess.Popen(_command(overrides, run), cwd=ROOT, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.15)  # into the next epoch's batches of 0.1 s each (a kill between a
    # checkpoint and the end-of-epoch log would lose that epoch's timing row for good)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    killed_at = torch.load(last, weights_only=False)
    assert not (run / "results.json").exists() and killed_at["epoch"] < 7
    again = subprocess.run(_command(overrides, run, "auto_resume=true"), cwd=ROOT, env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(last, weights_only=False)
    assert a["global_step"] == b["global_step"] == 8 * (4 if task == "sentiment" else 10)
    assert a["epoch"] == b["epoch"]
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], atol=0, rtol=0, msg=key)
    logs = []
    for r in "ab":  # every row but the wall-clock columns, which differ between any two runs
        with open(tmp_path / r / "csv" / "metrics.csv") as f:
            logs.append([{k: v for k, v in row.items() if not k.endswith("_s")}
                         for row in csv.DictReader(f)])
    assert logs[0] == logs[1]  # the resumed run's log lost nothing, repeated nothing
    results = [json.loads((tmp_path / r / "results.json").read_text()) for r in "ab"]
    scores = [{k: v for k, v in r.items() if k.startswith("test/") and not k.endswith("_per_s")}
              for r in results]  # (speeds: wall clock)
    assert scores[0] == scores[1] and len(scores[0]) >= 2
