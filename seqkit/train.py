"""``train(cfg)``: fit, test the best checkpoint, write the run folder, return the metrics.

The root ``train.py`` only wraps this in ``@hydra.main``; tests call it with composed configs.
"""
from __future__ import annotations

import csv
import gc
import json
import logging
import math
import os
import shutil
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from .build import build
from .callbacks import RunLog
from .checkpoint import FORMAT, read
from .data.cache import write_text
from .data.vectors import VECTORS
from .errors import full_traceback_wanted, one_line
from .memory import keep_freed_memory
from .runs import CONFIGS, ERROR_FILE, JobFailed, available_tasks, check_writable, first_frame, \
    record_failure, sweeping
from .plots import learning_curves
from .resume import Resume, logged_steps

log = logging.getLogger(__name__)
# keys a run may change when it continues: how long it trains, where and how it logs; and
# plateau_patience, compared where it acts (module.scheduler.patience; runs before it lack it)
RESUMABLE = ("paths", "ckpt_path", "auto_resume", "train", "test", "logger", "trainer.max_epochs",
             "trainer.max_steps", "trainer.max_time", "callbacks.progress_bar",
             "data.num_workers", "plateau_patience")


def _resume(cfg: DictConfig, out: Path) -> tuple[str | None, Path]:
    """The checkpoint to continue from and the folder to continue in.

    ``ckpt_path``: continue that checkpoint's run in its own folder when the run is unfinished
    (no results.json) and configured as this one; otherwise start a new folder from it.
    ``auto_resume``: this folder's last.ckpt, else the newest unfinished run of the task whose
    config equals this one but for the keys in RESUMABLE; none: start afresh."""
    ours = _comparable(OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True), str(out))
    if cfg.get("ckpt_path"):
        ckpt = str(cfg.ckpt_path)
        run = Path(ckpt).resolve().parent.parent
        if (run / "config.yaml").is_file() and not (run / "results.json").exists():
            differ = _config_differences(ours, run)
            if not differ:
                return ckpt, run
            log.info("%s's run was configured otherwise (%s): continuing from it in %s",
                     ckpt, differ, out)
        return ckpt, out
    if not cfg.get("auto_resume"):
        return None, out
    others = sorted((p.parent.parent for p in out.parent.glob("*/checkpoints/last.ckpt")
                     if not (p.parent.parent / "results.json").exists()),
                    key=lambda run: (run / "checkpoints/last.ckpt").stat().st_mtime, reverse=True)
    skipped = []
    for run in dict.fromkeys([out, *others]):  # this folder first, then the newest
        last = run / "checkpoints" / "last.ckpt"
        if not last.is_file():
            continue
        differ = _config_differences(ours, run)
        if not differ:
            log.info("auto_resume: continuing %s from %s", run, last)
            return str(last), run
        if run == out:
            raise ValueError(f"auto_resume: the run folder {out} holds a run configured "
                             f"otherwise ({differ}); give another hydra.run.dir")
        skipped.append(f"{run.name} differs in {differ}")
    log.info("auto_resume: no unfinished %s run with this config%s; starting afresh",
             cfg.task_name, f" ({'; '.join(skipped[:3])})" if skipped else "")
    return None, out


def _check_continuable(checkpoint: str) -> None:
    """Refuse to continue the training of a checkpoint that an older seqkit wrote: its
    optimizer state belongs to that version's modules (seqkit 0.1's Seq2Seq held its
    decoder's parts in another order). Its weights load; testing it works."""
    found = read(checkpoint, mmap=True).get("seqkit")
    if isinstance(found, dict) and found.get("format", 1) < FORMAT:
        raise ValueError(f"{checkpoint} was written by seqkit 0.1 (checkpoint format "
                         f"{found.get('format', 1)}); this seqkit cannot continue its training: "
                         f"test it (train=false ckpt_path=...), predict with it, or start anew")


def _config_differences(ours: dict, run: Path) -> str:
    """The keys in which ``run``'s config.yaml differs from ``ours`` (this run's config made
    ``_comparable``), as text; empty if none."""
    try:
        theirs = _comparable(OmegaConf.to_container(OmegaConf.load(run / "config.yaml")),
                             str(run))
    except Exception as e:  # a missing or unreadable record is no match
        return f"config.yaml unreadable: {type(e).__name__}"
    keys = _differing_keys(theirs, ours)
    return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def _comparable(config, folder: str, key: str = ""):
    """``config`` without the RESUMABLE keys, its own folder's path written as <run>."""
    if isinstance(config, dict):
        return {k: _comparable(v, folder, f"{key}{k}.") for k, v in config.items()
                if f"{key}{k}" not in RESUMABLE}
    if isinstance(config, list):
        return [_comparable(v, folder, key) for v in config]
    return config.replace(folder, "<run>") if isinstance(config, str) else config


def _differing_keys(a, b, key: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for name in sorted(a.keys() | b.keys())
                for k in _differing_keys(a.get(name), b.get(name), f"{key}{name}.")]
    return [] if a == b else [key.rstrip(".")]


def _absolute_paths(data: DictConfig) -> None:
    """Data files named relative to the working folder become absolute, so that the run's
    config.yaml (used by ``seqkit evaluate`` and resume) means the same from anywhere."""
    def absolute(node, key) -> None:
        if OmegaConf.is_missing(node, key) or node[key] is None:
            return  # a missing value is named as such when it is used
        value = node[key]
        if isinstance(value, (DictConfig, ListConfig)):
            for k in (value.keys() if isinstance(value, DictConfig) else range(len(value))):
                absolute(value, k)
        elif isinstance(value, str) and value:
            node[key] = str(Path(value).expanduser().absolute())

    for key in ("files", "vectors"):
        if key in data and data[key] not in VECTORS:  # a catalog name is not a path
            absolute(data, key)


def _log_into(run: Path) -> None:
    """A continued run logs into its own train.log: this process's log file moves there with
    what it holds so far, and the folder Hydra made for it, holding nothing else, goes."""
    from hydra.core.hydra_config import HydraConfig

    made = OmegaConf.select(HydraConfig.get(), "runtime.output_dir", default=None) \
        if HydraConfig.initialized() else None  # None: not under Hydra's own runner
    made = made and Path(made)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        stray = Path(handler.baseFilename)
        if stray.parent != made or made == run:
            continue
        root.removeHandler(handler)
        handler.close()
        moved = logging.FileHandler(run / stray.name)
        moved.setFormatter(handler.formatter)
        moved.setLevel(handler.level)
        moved.stream.write(stray.read_text())
        root.addHandler(moved)
        if {p.name for p in made.iterdir()} <= {".hydra", stray.name}:
            shutil.rmtree(made)


def choose_hardware(trainer: DictConfig) -> None:
    """Resolve the trainer's ``accelerator: auto`` (a GPU when there is one, else the CPU) and
    ``precision: auto`` (bf16-mixed on a GPU with bfloat16, 16-mixed on another, 32-true on
    the CPU) in place, so that config.yaml records the choice, and say what it is."""
    has_gpu = torch.cuda.is_available()
    if trainer.get("accelerator") == "auto":
        trainer.accelerator = "gpu" if has_gpu else "cpu"
    on_gpu = trainer.accelerator in ("gpu", "cuda")
    if on_gpu and not has_gpu:
        raise ValueError(f"trainer.accelerator={trainer.accelerator}: this machine has no "
                         f"CUDA GPU (torch.cuda.is_available() is False); use trainer=cpu")
    if trainer.get("precision") == "auto":
        trainer.precision = ("bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed") \
            if on_gpu else "32-true"
    log.info("hardware: %s, precision %s", torch.cuda.get_device_name(0) if on_gpu else "CPU",
             trainer.precision)


def _no_tips(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip")


def _quiet() -> None:
    """Known noise, silenced on purpose: each filter says why."""
    # Lightning 2.6 calls a pytree API that torch 2.13 deprecates: nothing a user can change
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # short epochs (small data, large batches): the epoch's metrics are logged all the same
    warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller "
                                              r"than the logging interval")
    # an advertisement for a hosted logging service, at every run
    lightning = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if _no_tips not in lightning.filters:
        lightning.addFilter(_no_tips)


def _lightning_into_log() -> None:
    """Lightning's own messages (devices, warnings, ...) go through the run's log handlers
    (console and train.log) instead of the console handler it adds for itself."""
    if not logging.getLogger().handlers:
        return
    for name in ("pytorch_lightning", "lightning_fabric"):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
            logger.removeHandler(handler)
        logger.propagate = True


def check_disk(out: Path, model) -> None:
    """Fail before training if the run folder's disk cannot hold two checkpoints (weights and
    Adam's two moments, twice over)."""
    need = 2 * 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    free = shutil.disk_usage(out).free
    if free < need:
        raise ValueError(f"the disk of the run folder {out} has {free / 2**20:.1f} MiB free; "
                         f"this model's checkpoints need about {need / 2**20:.1f} MiB")


def _logged_before(out: Path, checkpoint: str | None) -> list[dict[str, str]]:
    """The rows of a run's metrics.csv logged before its checkpoint (those of the interrupted
    epoch after it are logged again), all of them without one. Lightning's CSV logger rewrites
    the file from what it holds."""
    path = out / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    stepped = logged_steps(checkpoint) if checkpoint else math.inf
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


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the task's model, test the best checkpoint, and return the final metrics."""
    if cfg.get("task_name") is None:
        raise ValueError(f"choose a task: python train.py task=<name>, one of {available_tasks()}")
    _quiet()
    _lightning_into_log()
    _absolute_paths(cfg.data)
    choose_hardware(cfg.trainer)  # before resuming: config.yaml holds the choice
    out = Path(cfg.paths.output_dir)
    resume, folder = _resume(cfg, out) if cfg.get("train", True) else (cfg.get("ckpt_path"), out)
    if resume and cfg.get("train", True):
        _check_continuable(resume)
    continuing = folder != out or (resume is not None and (out / "config.yaml").is_file())
    if folder != out:  # continue in that run's folder: its best checkpoint and logs are there,
        # and Lightning keeps the best score only while the checkpoint folder stays the same
        out = folder
        cfg.paths.output_dir = str(out)
        _log_into(out)
    check_writable(out)  # before the data is read: that may take minutes
    (out / ERROR_FILE).unlink(missing_ok=True)  # an earlier failure of the run it continues
    seed = pl.seed_everything(cfg.seed, workers=True)  # seed: null draws one

    built = build(cfg, ("fit",), seed)
    data, task = built.data, built.task
    check_disk(out, built.model)
    testing = cfg.get("test", True) and getattr(data, "has_split", lambda split: True)("test")
    if cfg.get("test", True) and not testing:
        log.info("no test split in the data (data.files.test is not set): nothing to test")
    if testing:
        data.setup("test")  # a bad test file fails now, not after the training
    # an entry without _target_ tunes a callback the chosen group does not have (a task's
    # early-stopping patience under callbacks=none): nothing to build
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()
                 if c and "_target_" in c] + [RunLog(), Resume(seed, task.monitor)]
    earlier = _logged_before(out, resume) if resume and cfg.get("train", True) else []
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    _log_again(loggers, earlier)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    if trainer.is_global_zero and not continuing:  # a continued run keeps its own record
        run_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        OmegaConf.save(run_cfg, out / "config.yaml", resolve=True)

    forked = getattr(trainer.strategy, "_start_method", None) == "fork"
    if forked:  # the forks share these pages until one writes to them, as a collection would
        gc.collect()
        gc.freeze()
    if cfg.get("train", True):
        trainer.fit(task, datamodule=data, ckpt_path=resume)
        if forked:  # what the forks logged is in the file only; the test's forks start from here
            _log_again(loggers, _logged_before(out, None)[len(earlier):])
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = trainer.checkpoint_callback
    if best is not None and best.best_model_score is not None:  # the best epoch's, not the last
        metrics[best.monitor] = float(best.best_model_score)
    if testing:
        ckpt = (best.best_model_path if best is not None else "") or cfg.get("ckpt_path")
        if not ckpt and not cfg.get("train", True):
            raise ValueError("test=true train=false needs ckpt_path=<checkpoint to evaluate>")
        results = trainer.test(task, datamodule=data, ckpt_path=ckpt or None)
        metrics.update({k: float(v) for k, v in results[0].items()} if results else {})
        if trainer.is_global_zero:
            record = {k: v for k, v in metrics.items() if k.startswith("test/")}
            record["checkpoint"] = str(ckpt) if ckpt else None
            log.info("test: %s", ", ".join(f"{k} {v:.4f}" for k, v in record.items()
                                           if k != "checkpoint"))
            write_text(out / "results.json", json.dumps(record, indent=2) + "\n")
    if trainer.is_global_zero:
        learning_curves(out / "csv" / "metrics.csv", out / "plots" / "learning_curves.png")
        log.info("run folder: %s", out)
    return metrics



def run(cfg: DictConfig) -> float | None:
    """The Hydra task function: train, and return what a sweeper optimizes. A failure is
    written to the run folder's train.log and error.txt; a user's error then ends a single
    run with one line and status 1, and a sweep's job as failed, while the sweep goes on."""
    try:
        metrics = train(cfg)
    except Exception as error:
        message = one_line(error)
        record_failure(Path(cfg.paths.output_dir), message, error)
        if full_traceback_wanted() or (message is None and not sweeping()):
            raise
        if sweeping():
            raise JobFailed(f"error: {message or first_frame(error)}") from error
        sys.exit(f"error: {message}")
    return metrics.get(cfg.get("optimized_metric") or "")


def main() -> None:
    """``python train.py`` and ``seqkit train`` (``python -m seqkit.train``): Hydra's command
    line over ``run``, with the configs from wherever seqkit is (``CONFIGS``). ``--debug`` (or
    ``HYDRA_FULL_ERROR=1``) shows an error's full traceback."""
    import hydra

    keep_freed_memory()
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
        os.environ["HYDRA_FULL_ERROR"] = "1"
    hydra.main(version_base="1.3", config_path=str(CONFIGS), config_name="train")(run)()


if __name__ == "__main__":
    main()
