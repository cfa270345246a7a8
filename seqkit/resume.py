"""Exact resume: a run continued from a checkpoint goes on as an uninterrupted one would.

Lightning restores the weights, the optimizer, the scheduler and the loops, but not the random
generators, and it steps a plateau scheduler after the checkpoint written at the end of an
epoch, so that a run resumed from it would miss that step. ``Resume`` (which ``train(cfg)``
adds to every run) and ``EpochShuffle`` (seeded by the data module) make up for both; the one
Lightning internal seqkit reads, the logger's step in a checkpoint, is read by ``logged_steps``.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from .checkpoint import CheckpointError, read
from .data.sampler import epoch_seed


class Resume(pl.Callback):
    """Each training epoch's randomness and learning rate depend only on the run's ``seed``,
    the epoch and what the checkpoint holds.

    - At the start of each training epoch, the random, numpy and torch generators are seeded
      from (seed, epoch, rank): the epoch's dropout masks and augmentations do not depend on
      what ran before it.
    - The schedulers of ``configure_optimizers`` (a seqkit ``Task`` leaves their stepping to
      this callback) are stepped once per epoch, before the epoch's checkpoint is written
      (Lightning runs checkpoint callbacks last): when the validation that ends the epoch is
      over, a plateau scheduler with the value of ``monitor`` it logged; else (no validation
      this epoch) when the training epoch ends, all but a plateau scheduler.
    """

    def __init__(self, seed: int, monitor: str | None = None) -> None:
        self.seed, self.monitor = seed, monitor
        self.stepped_epoch = -1  # the last epoch whose schedulers were stepped

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        seed = epoch_seed(self.seed, trainer.current_epoch) + trainer.global_rank
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking and trainer.is_last_batch:
            self._step(trainer, plateau=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._step(trainer, plateau=False)

    def _step(self, trainer, plateau: bool) -> None:
        if self.stepped_epoch == trainer.current_epoch:
            return
        for config in trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                if plateau and self.monitor in trainer.callback_metrics:
                    config.scheduler.step(trainer.callback_metrics[self.monitor])
            else:
                config.scheduler.step()
        self.stepped_epoch = trainer.current_epoch

    def state_dict(self) -> dict:
        return {"stepped_epoch": self.stepped_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.stepped_epoch = state_dict["stepped_epoch"]


def logged_steps(path: str | Path) -> int:
    """The logger's step when the checkpoint at ``path`` was written (the batches that stepped
    the optimizer: metrics.csv's ``step``), read from Lightning's loop state; 0 for a
    checkpoint without loops (weights only). A Lightning that keeps it elsewhere is an error."""
    loops = read(path, mmap=True).get("loops")  # the counters only: no tensor is read
    if loops is None:
        return 0
    try:
        return int(loops["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"])
    except (KeyError, TypeError):
        raise CheckpointError(
            f"{path}: its loops hold no fit_loop/epoch_loop.state_dict/_batches_that_stepped, "
            f"where Lightning 2.6 keeps the logger's step; this Lightning {pl.__version__} keeps "
            f"it elsewhere, and seqkit.resume.logged_steps must learn where") from None
