"""``train(cfg)``: fit, test the best checkpoint, write the run folder, return the metrics.

The root ``train.py`` only wraps this in ``@hydra.main``; tests call it with composed configs.
"""
from __future__ import annotations

import csv
import inspect
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from .plots import learning_curves

log = logging.getLogger(__name__)
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def available_tasks() -> list[str]:
    return sorted(p.stem for p in (CONFIGS / "task").glob("*.yaml"))


def _resume_from(cfg: DictConfig, out: Path) -> str | None:
    """``ckpt_path`` if given; with ``auto_resume``, this run's last.ckpt, else the newest
    unfinished run of the same task (one with a last.ckpt and no results.json)."""
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    if not cfg.get("auto_resume"):
        return None
    candidates = [out / "checkpoints" / "last.ckpt"] + sorted(
        (p for p in out.parent.glob("*/checkpoints/last.ckpt")
         if not (p.parent.parent / "results.json").exists()),
        key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        if path.is_file():
            log.info("auto_resume: continuing from %s", path)
            return str(path)
    log.info("auto_resume: no unfinished run of %s to continue; starting afresh", cfg.task_name)
    return None


def _run_folder(checkpoint: str) -> Path | None:
    """The unfinished seqkit run a checkpoint was saved in (``<run>/checkpoints/x.ckpt``, no
    ``results.json`` yet); None for a finished run's, which a new run starts from instead."""
    run = Path(checkpoint).resolve().parent.parent
    done = (run / "results.json").exists()
    return run if (run / "config.yaml").is_file() and not done else None


def check_writable(out: Path) -> None:
    """Fail before the data is read, not at the first save, if the run folder cannot be
    written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-check.")  # one per process
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"cannot write to the run folder {out}: {e.strerror or e}") from None


def check_disk(out: Path, model) -> None:
    """Fail before training if the run folder's disk cannot hold two checkpoints (weights and
    Adam's two moments, twice over)."""
    need = 2 * 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    free = shutil.disk_usage(out).free
    if free < need:
        raise ValueError(f"the disk of the run folder {out} has {free / 2**20:.1f} MiB free; "
                         f"this model's checkpoints need about {need / 2**20:.1f} MiB")


def _logged_before(out: Path, checkpoint: str | None) -> list[dict[str, str]]:
    """The rows of a resumed run's metrics.csv logged before its checkpoint (those of the
    interrupted epoch after it are logged again). Lightning's CSV logger deletes the file."""
    path = out / "csv" / "metrics.csv"
    if not checkpoint or not path.is_file():
        return []
    loops = torch.load(checkpoint, map_location="cpu", weights_only=False,
                       mmap=True).get("loops", {})  # the loop counters only: no tensor is read
    stepped = loops.get("fit_loop", {}).get("epoch_loop.state_dict", {}).get(
        "_batches_that_stepped", 0)
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) < stepped]


def _log_again(loggers: list, rows: list[dict[str, str]]) -> None:
    for logger in loggers:
        if rows and isinstance(logger, pl.loggers.CSVLogger):
            for row in rows:
                logger.experiment.log_metrics(
                    {k: int(v) if k == "epoch" else float(v) for k, v in row.items()
                     if v != "" and k != "step"}, int(row["step"]))
            logger.save()


def _accepted(target: str, values: dict) -> dict:
    """The entries of ``values`` that the constructor of ``target`` takes."""
    params = inspect.signature(get_class(target)).parameters
    return {k: v for k, v in values.items() if k in params}


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the task's model, test the best checkpoint, and return the final metrics."""
    if cfg.get("task_name") is None:
        raise ValueError(f"choose a task: python train.py task=<name>, one of {available_tasks()}")
    out = Path(cfg.paths.output_dir)
    resume = _resume_from(cfg, out)
    if resume and cfg.get("train", True) and _run_folder(resume):
        # continue in that run's folder: its best checkpoint and logs are there, and
        # Lightning keeps the best score only while the checkpoint folder stays the same
        out = _run_folder(resume)
        cfg.paths.output_dir = str(out)
    check_writable(out)  # before the data is read: that may take minutes
    pl.seed_everything(cfg.seed, workers=True)

    data = instantiate(cfg.data)
    data.setup("fit")
    dims = data.dims()  # what the model needs from the data: vocab_size, num_classes, ...
    model = instantiate(cfg.model, **dims)
    check_disk(out, model)
    if hasattr(data, "init_model"):  # e.g. pretrained word vectors
        data.init_model(model)
    artifacts = {"model": {**OmegaConf.to_container(cfg.model, resolve=True), **dims},
                 **data.artifacts()}
    task = instantiate(cfg.module, model=model, **_accepted(cfg.module._target_, dims))
    task.artifacts = artifacts  # set, not passed: instantiate would build the model config
    # an entry without _target_ tunes a callback the chosen group does not have (a task's
    # early-stopping patience under callbacks=none): nothing to build
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()
                 if c and "_target_" in c]
    earlier = _logged_before(out, resume) if cfg.get("train", True) else []
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    _log_again(loggers, earlier)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    if trainer.is_global_zero:
        run_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        OmegaConf.save(run_cfg, out / "config.yaml", resolve=True)

    if cfg.get("train", True):
        trainer.fit(task, datamodule=data, ckpt_path=resume)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = trainer.checkpoint_callback
    if best is not None and best.best_model_score is not None:  # the best epoch's, not the last
        metrics[best.monitor] = float(best.best_model_score)
    if cfg.get("test", True):
        ckpt = (best.best_model_path if best is not None else "") or cfg.get("ckpt_path")
        if not ckpt and not cfg.get("train", True):
            raise ValueError("test=true train=false needs ckpt_path=<checkpoint to evaluate>")
        results = trainer.test(task, datamodule=data, ckpt_path=ckpt or None)
        metrics.update({k: float(v) for k, v in results[0].items()} if results else {})
        if trainer.is_global_zero:
            record = {k: v for k, v in metrics.items() if k.startswith("test/")}
            record["checkpoint"] = str(ckpt) if ckpt else None
            (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    if trainer.is_global_zero:
        learning_curves(out / "csv" / "metrics.csv", out / "plots" / "learning_curves.png")
        log.info("run folder: %s", out)
    return metrics
