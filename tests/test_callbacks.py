"""The callbacks every run has: throughput, atomic checkpoints, a stop on a non-finite loss."""
import time
from types import SimpleNamespace

import pytest
import torch

from seqkit.callbacks import AtomicCheckpointIO, NonFiniteLoss, Throughput
from seqkit.train import train
from tests.helpers import tiny_sentiment, train_config


def test_throughput_leaves_the_closing_validation_out(monkeypatch):
    # epoch start 0, batch 0.5 -> 1, validation 1 -> 5, epoch end 6
    clock = iter([0.0, 0.5, 1.0, 1.0, 5.0, 6.0])
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    logged = {}
    module = SimpleNamespace(log_dict=lambda values: logged.update(values))
    trainer = SimpleNamespace(sanity_checking=False)
    meter = Throughput()
    batch = {"tokens": torch.zeros(4, 3), "lengths": torch.tensor([3, 2, 2, 1])}
    meter.on_train_epoch_start(trainer, module)
    meter.on_train_batch_start(trainer, module, batch, 0)
    meter.on_train_batch_end(trainer, module, None, batch, 0)
    meter.on_validation_start(trainer, module)
    meter.on_validation_end(trainer, module)
    meter.on_train_epoch_end(trainer, module)
    assert float(logged["train/epoch_s"]) == 2.0  # 6 s in all, 4 s of them validating
    assert float(logged["train/examples_per_s"]) == 2.0
    assert float(logged["train/tokens_per_s"]) == 4.0
    assert float(logged["train/data_s"]) == 0.5  # the wait for the batch


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
