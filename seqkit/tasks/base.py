"""What every task shares: the optimizer and scheduler from config, self-contained checkpoints."""
from __future__ import annotations

import random
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from ..checkpoint import FORMAT
from ..data.sampler import epoch_seed


class Task(pl.LightningModule):
    """A LightningModule around a plain ``model``.

    ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``) taking the
    parameters / the optimizer. ``artifacts`` is what a checkpoint needs besides the weights to
    be used on its own (the model's config, vocabularies, label names); it is stored in every
    checkpoint under ``"seqkit"``.
    """

    def __init__(self, model: nn.Module, optimizer: Callable, scheduler: Callable | None = None,
                 monitor: str = "val/loss", artifacts: dict | None = None) -> None:
        super().__init__()
        self.model = model
        self.optimizer, self.scheduler, self.monitor = optimizer, scheduler, monitor
        self.artifacts = artifacts or {}
        self._stepped_epoch = -1  # the epoch whose scheduler step is done

    def configure_optimizers(self):
        extra = {}
        if str(self.trainer.precision).startswith("16") and getattr(
                self.optimizer, "keywords", {}).get("fused"):
            # a fused optimizer unscales float16 gradients itself, after Lightning's clipping
            extra["fused"] = False
        optimizer = self.optimizer(params=self.parameters(), **extra)
        if self.scheduler is None:
            return optimizer
        scheduler = {"scheduler": self.scheduler(optimizer=optimizer), "interval": "epoch"}
        if self.monitor:
            scheduler["monitor"] = self.monitor
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,
                                    gradient_clip_algorithm=None) -> None:
        """bfloat16 needs no loss scaling, so its gradients are clipped as they are: Lightning's
        mixed-precision plugin refuses to clip for a fused optimizer (about 4x faster than
        the unfused Adam on CPU), whatever the precision."""
        if gradient_clip_val and str(self.trainer.precision).startswith("bf16"):
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(self.parameters(), gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def lr_scheduler_step(self, scheduler, metric) -> None:
        """Not here: Lightning would step an epoch's scheduler after the checkpoint written
        when that epoch's validation ends, so a run resumed from it would miss one step (and a
        plateau scheduler its count). seqkit steps it once per epoch: when the validation that
        ends the epoch has logged its scores, else (no validation this epoch; not a plateau
        scheduler, which needs the score) when the training epoch ends."""

    def _step_scheduler(self, plateau: bool) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is None or self._stepped_epoch == self.current_epoch:
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if not plateau or self.monitor not in self.trainer.callback_metrics:
                return
            scheduler.step(self.trainer.callback_metrics[self.monitor])
        else:
            scheduler.step()
        self._stepped_epoch = self.current_epoch

    def on_validation_epoch_end(self) -> None:
        """A task logs its scores first, then calls this."""
        trainer = self.trainer
        if trainer.state.fn == "fit" and not trainer.sanity_checking and trainer.is_last_batch:
            self._step_scheduler(plateau=True)

    def on_train_epoch_end(self) -> None:
        self._step_scheduler(plateau=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the precision it trained at: seqkit predict decodes at it too
        checkpoint["seqkit"] = {**self.artifacts, "precision": str(self.trainer.precision),
                                "format": FORMAT}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.artifacts = checkpoint.get("seqkit", self.artifacts)

    def on_train_epoch_start(self) -> None:
        """Reseed from (seed, epoch, rank): an epoch's shuffle and dropout masks then do not
        depend on what ran before it, so a run resumed from a checkpoint continues exactly as
        an uninterrupted one (Lightning restores the loops, not the random generators)."""
        seed = epoch_seed(self.current_epoch) + self.global_rank
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
