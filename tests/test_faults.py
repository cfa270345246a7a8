"""Faults a run survives: SIGKILL and resume, a save cut short, a non-finite loss, a run
folder that cannot be written."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from seqkit.callbacks import AtomicCheckpointIO, NonFiniteLoss
from seqkit.train import train
from tests.helpers import ROOT, tiny_sentiment, train_config


def _command(files, run, *more):
    return [sys.executable, "train.py", *tiny_sentiment(files, "seed=5", "trainer.max_epochs=8",
                                                "logger=csv", "callbacks.progress_bar=null"),
            f"hydra.run.dir={run}", f"paths.output_dir={run}",
            "+callbacks.pace._target_=tests.helpers.Pace", "+callbacks.pace.seconds=0.1", *more]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path, tiny_files):
    straight = subprocess.run(_command(tiny_files, tmp_path / "a"), cwd=ROOT, env=_env(),
                              capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]
    run = tmp_path / "b"
    victim = subprocess.Popen(_command(tiny_files, run), cwd=ROOT, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.15)  # into the next epoch's four batches of 0.1 s each (a kill between a
    # checkpoint and the end-of-epoch log would lose that epoch's timing row for good)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    killed_at = torch.load(last, weights_only=False)
    assert not (run / "results.json").exists() and killed_at["epoch"] < 7
    again = subprocess.run(_command(tiny_files, run, "auto_resume=true"), cwd=ROOT, env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(last, weights_only=False)
    assert a["global_step"] == b["global_step"] == 8 * 4 and a["epoch"] == b["epoch"]
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], atol=0, rtol=0, msg=key)
    logs = []
    for r in "ab":  # every row but the wall-clock columns, which differ between any two runs
        with open(tmp_path / r / "csv" / "metrics.csv") as f:
            logs.append([{k: v for k, v in row.items() if not k.endswith("_s")}
                         for row in csv.DictReader(f)])
    assert logs[0] == logs[1]  # the resumed run's log lost nothing, repeated nothing
    results = [json.loads((tmp_path / r / "results.json").read_text()) for r in "ab"]
    assert results[0]["test/acc"] == results[1]["test/acc"]
    assert results[0]["test/loss"] == results[1]["test/loss"]


def test_a_save_cut_short_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"weights": torch.arange(5)}, path)

    def killed(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # what a kill during the write looks like to the file

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"weights": torch.zeros(5)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["weights"], torch.arange(5))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_a_non_finite_loss_stops_the_run_and_the_checkpoints_stay_good(tmp_path, tiny_files):
    poisoned = tiny_sentiment(tiny_files, "trainer.max_epochs=3",
                              "+callbacks.poison._target_=tests.helpers.Poison")
    with pytest.raises(NonFiniteLoss, match=r"training loss is nan at epoch 1, batch 1 "
                                            r"\(step 6\); the run stops here"):
        train(train_config(tmp_path, poisoned))
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 0 and last["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())


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
