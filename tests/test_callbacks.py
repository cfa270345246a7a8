"""The callbacks every run has: throughput, atomic checkpoints, a stop on a non-finite loss."""
import time
from types import SimpleNamespace

import torch

from seqkit.callbacks import Throughput


def test_throughput_leaves_the_closing_validation_out(monkeypatch):
    clock = iter([0.0, 1.0, 5.0, 6.0])  # epoch start, validation 1 s -> 5 s, epoch end
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    logged = {}
    module = SimpleNamespace(log_dict=lambda values: logged.update(values))
    trainer = SimpleNamespace(sanity_checking=False)
    meter = Throughput()
    meter.on_train_epoch_start(trainer, module)
    meter.on_train_batch_end(trainer, module, None, {"tokens": torch.zeros(4, 3),
                                                     "lengths": torch.tensor([3, 2, 2, 1])}, 0)
    meter.on_validation_start(trainer, module)
    meter.on_validation_end(trainer, module)
    meter.on_train_epoch_end(trainer, module)
    assert float(logged["train/epoch_s"]) == 2.0  # 6 s in all, 4 s of them validating
    assert float(logged["train/examples_per_s"]) == 2.0
    assert float(logged["train/tokens_per_s"]) == 4.0
