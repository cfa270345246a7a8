"""What every task shares: the optimizer and scheduler from config, self-contained checkpoints."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from torch import nn

from ..checkpoint import FORMAT


def detach(state):
    """A recurrent state (a tensor or nested tuples of tensors) cut from the graph."""
    return tuple(detach(s) for s in state) if isinstance(state, tuple) else state.detach()


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
        """Not Lightning's: ``seqkit.resume.Resume`` steps the scheduler, before the epoch's
        checkpoint is written (Lightning would step a plateau scheduler after it). Fitted
        without that callback, a task keeps its learning rate."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the precision it trained at: seqkit predict decodes at it too
        checkpoint["seqkit"] = {**self.artifacts, "precision": str(self.trainer.precision),
                                "format": FORMAT}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.artifacts = checkpoint.get("seqkit", self.artifacts)

    def run_folder(self) -> Path | None:
        """Where the test writes what it makes besides its scores: the run folder, on the first
        process only (None on the others)."""
        root = self.trainer.default_root_dir
        return Path(root) if self.trainer.is_global_zero and root else None
