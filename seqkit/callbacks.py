"""Callbacks the configs add to every run."""
from __future__ import annotations

import time

import pytorch_lightning as pl
import torch


class Throughput(pl.Callback):
    """Logs ``train/examples_per_s`` (sentences, pieces, ...) and ``train/epoch_s``, the wall
    time of each training epoch (validation excluded), so every run reports its speed."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._count = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
        self._count += len(first)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self._start
        pl_module.log_dict({"train/epoch_s": torch.tensor(seconds),
                            "train/examples_per_s": torch.tensor(self._count / seconds)})
