"""Exact resume as one piece: each epoch's seed, the scheduler's steps, the logger's step in a
checkpoint. (The resumed runs themselves: test_train.py and test_faults.py.)"""
import csv
from functools import partial

import pytest
import torch

from seqkit.checkpoint import CheckpointError
from seqkit.data.classification import SentimentData
from seqkit.data.sampler import EpochShuffle
from seqkit.resume import logged_steps
from seqkit.train import train
from tests.helpers import tiny_sentiment, train_config


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


def test_an_epochs_order_depends_on_the_seed_it_is_given_and_the_epoch(monkeypatch, tiny_files):
    def order(seed: int, epoch: int) -> list[int]:
        sampler = EpochShuffle(40, list(range(40)), batch_size=4, pool=2, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    first = order(1, 0)
    monkeypatch.setenv("PL_GLOBAL_SEED", "99")  # what seed_everything sets: not read
    assert order(1, 0) == first and order(2, 0) != first and order(1, 1) != first
    data = SentimentData(None, {k: str(v) for k, v in tiny_files.items()}, batch_size=16)
    data.shuffle_seed = 1
    one = list(data.train_dataloader().sampler)
    data.shuffle_seed = 2
    assert list(data.train_dataloader().sampler) != one


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
