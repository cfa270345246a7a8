"""Callbacks for fault tests: a run that takes a while (to kill it mid-epoch), a NaN."""
import time

import pytorch_lightning as pl


class Pace(pl.Callback):
    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args) -> None:
        time.sleep(self.seconds)


class Poison(pl.Callback):
    """Puts a NaN into the weights at the start of epoch ``epoch`` (a fault to survive)."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            list(pl_module.parameters())[-1].data.fill_(float("nan"))  # the output bias
