"""Callbacks (and the checkpoint writer) the configs add to every run."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_only

from .checkpoint import artifacts, read
from .data.cache import replace_atomically
from .errors import NonFiniteLoss

log = logging.getLogger("seqkit.train")


class Throughput(pl.Callback):
    """Logs ``train/examples_per_s`` (sentences, pieces, ...) and ``train/epoch_s``, the wall
    time of each training epoch (validation, and so the checkpoints it saves, excluded), so
    every run reports its speed; ``train/tokens_per_s`` where batches have lengths (target
    tokens with </s> for seq2seq); and ``train/data_s``, the part of the epoch spent waiting
    for batches (from the epoch's start or a batch's end to the next batch's start)."""
    LENGTHS = ("tgt_lengths", "lengths")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._validating = time.perf_counter(), 0.0
        self._count = self._tokens = 0
        self._waiting, self._ready = 0.0, self._start

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._waiting += time.perf_counter() - self._ready

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
        self._count += len(first)
        lengths = next((batch[k] for k in self.LENGTHS if isinstance(batch, dict) and k in batch),
                       None)
        if lengths is not None:
            self._tokens += int(lengths.sum())
        self._ready = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        # the epoch's closing validation runs before on_train_epoch_end: not training time
        if not trainer.sanity_checking:
            self._validating += time.perf_counter() - self._validation_start

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self._start - self._validating
        speeds = {"train/epoch_s": torch.tensor(seconds),
                  "train/examples_per_s": torch.tensor(self._count / seconds),
                  "train/data_s": torch.tensor(self._waiting)}
        if self._tokens:
            speeds["train/tokens_per_s"] = torch.tensor(self._tokens / seconds)
        pl_module.log_dict(speeds)


class ModelSize(pl.Callback):
    """One log line on the model at the start of training, in place of Lightning's summary
    table (whose FLOPs column reads 0 for every model that gives no example input)."""

    @rank_zero_only
    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        params = list(module.parameters())
        total = sum(p.numel() for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
        size = sum(p.numel() * p.element_size() for p in params) / 1e6
        log.info("model: %s, %s parameters (%s trainable), %.1f MB",
                 type(getattr(module, "model", module)).__name__, f"{total:,}",
                 f"{trainable:,}", size)


class RunLog(pl.Callback):
    """The run's story in its log (and so in train.log): a resume and its checkpoint, each
    epoch's metrics, early stopping, an interruption. train(cfg) adds it to every run; under
    DDP the first process tells it."""

    def __init__(self) -> None:
        self._epoch: int | None = None  # the epoch whose metrics are still to be logged

    @rank_zero_only
    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.ckpt_path:
            log.info("resumed from %s at epoch %d (step %d)", trainer.ckpt_path,
                     trainer.current_epoch, trainer.global_step)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._log_epoch(trainer)  # the previous one's: its training metrics are in by now
        self._epoch = trainer.current_epoch

    @rank_zero_only
    def on_fit_end(self, trainer, pl_module) -> None:
        self._log_epoch(trainer)
        for stopper in trainer.early_stopping_callbacks:
            if stopper.stopped_epoch:
                log.info("stopped at epoch %d: %s did not improve for %d epochs (best %.4f)",
                         stopper.stopped_epoch, stopper.monitor, stopper.wait_count,
                         float(stopper.best_score))

    @rank_zero_only
    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            log.warning("interrupted at epoch %d (step %d); auto_resume=true continues from "
                        "the last checkpoint", trainer.current_epoch, trainer.global_step)

    @rank_zero_only
    def _log_epoch(self, trainer) -> None:
        if self._epoch is None:
            return
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        log.info("epoch %d: %s", self._epoch,
                 ", ".join(f"{k} {v:.4g}" for k, v in sorted(values.items())))
        self._epoch = None


class StopOnNonFinite(pl.Callback):
    """Stops the run at the first batch whose training loss is NaN or infinite, before any
    checkpoint can hold the weights it produced: the last checkpoint on disk is the last good
    one. Reads the loss a step returns, or (manual optimization) the ``train/*`` value it
    logs."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            loss = next((v for k, v in trainer.callback_metrics.items()
                         if k.startswith("train/") and not k.endswith("_s")), None)
        mine = loss is not None and not bool(torch.isfinite(torch.as_tensor(loss)).all())
        bad = mine
        if trainer.world_size > 1:  # every process stops together, or the others would hang
            bad = trainer.strategy.reduce_boolean_decision(mine, all=False)
        if not bad:
            return
        last = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else None
        value = float(torch.as_tensor(loss).float().mean()) if mine else \
            "non-finite on another process"
        raise NonFiniteLoss(
            f"training loss is {value} at epoch "
            f"{trainer.current_epoch}, batch {batch_idx} (step {trainer.global_step}); the run "
            f"stops here and its checkpoints{f' in {last}' if last else ''} are from before "
            f"it (resume with auto_resume=true, e.g. with a lower learning rate)")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside their destination, flushed to disk and
    renamed over it: a run killed during a save leaves the previous ``last.ckpt`` whole.
    (Lightning's own save renames from the system's temporary folder, which on another
    filesystem turns into a copy that a kill can cut short.)"""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())

        replace_atomically(Path(path), write)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        """Resuming (``ckpt_path=``, ``auto_resume``) and testing read weights-only, whatever
        Lightning asks: a checkpoint never runs code. An older seqkit's is read in today's
        layout (``seqkit.checkpoint.artifacts``)."""
        ckpt = read(path, map_location)
        if "seqkit" in ckpt:
            artifacts(ckpt, path)
        return ckpt
