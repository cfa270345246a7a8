"""What surrounds a run under Hydra: where the configs are, the run folder's record of a
failure, the one-line ``JobFailed`` of a sweep's job, and the Hydra callbacks
(configs/hydra/default.yaml) ``Preflight`` (before Hydra creates a folder) and
``SweepSummary`` (after each job). The task function itself is ``seqkit.train.run``.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobStatus
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)
ERROR_FILE = "error.txt"  # a failed run's reason, one line, in its folder


def _configs() -> Path:
    """The config folder: in a checkout, the configs/ beside this seqkit/ (code and configs
    from one tree); installed, the package ``seqkit.configs`` (configs/, mapped into the
    wheel)."""
    beside = Path(__file__).resolve().parent.parent / "configs"
    if (beside / "train.yaml").is_file() and (beside / "task").is_dir():
        return beside
    spec = importlib.util.find_spec("seqkit.configs")
    return Path(spec.submodule_search_locations[0]) if spec else beside


CONFIGS = _configs()


def available_tasks() -> list[str]:
    return sorted(p.stem for p in (CONFIGS / "task").glob("*.yaml"))


class JobFailed(CompactHydraException):
    """A sweep's job failed for the reason given (Hydra prints it as one line)."""


def sweeping() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_failure(folder: Path, message: str | None, error: BaseException) -> None:
    """The reason in ``folder/error.txt`` and, with the traceback of a bug, in train.log."""
    reason = message or first_frame(error)
    file_logs = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "run failed: %s", (reason,),
                            None if message else (type(error), error, error.__traceback__))
    for handler in file_logs:  # the console gets the one line from the caller
        handler.handle(record)
    if folder.is_dir():
        try:
            (folder / ERROR_FILE).write_text(reason + "\n")
        except OSError:  # an unwritable folder: the error itself says so on the console
            pass


def first_frame(error: BaseException) -> str:
    """A bug's type, message and where it was raised, on one line."""
    where = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    at = f" (at {Path(where[0].filename).name}:{where[0].lineno})" if where else ""
    return f"{type(error).__name__}: {error}{at}".replace("\n", " ")


def check_writable(folder: Path, what: str = "the run folder") -> None:
    """Fail early, not at the first save, if ``folder`` cannot be created and written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check.")  # one per process
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"cannot write to {what} {folder}: {e.strerror or e}") from None


class Preflight(Callback):
    """Checks that need no folder, before Hydra creates one: a task is chosen (listing the
    tasks leaves nothing behind) and the run or sweep folder can be written."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, Path(config.hydra.run.dir), "the run folder (hydra.run.dir)")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, Path(config.hydra.sweep.dir), "the sweep folder (hydra.sweep.dir)")

    @staticmethod
    def _check(config: DictConfig, folder: Path, what: str) -> None:
        if config.get("task_name") is None:
            sys.exit(f"error: choose a task: python train.py task=<name>, one of "
                     f"{', '.join(available_tasks())}")
        try:
            check_writable(folder, what)
        except ValueError as e:
            sys.exit(f"error: {e}")


class SweepSummary(Callback):
    """After each job, ``<sweep>/summary.json`` lists every job so far: its number, overrides,
    folder, status and the failed ones' reasons. At the end the failures are named and the
    process exits with status 1 unless every job succeeded. (Hydra's basic sweeper itself
    ends a sweep that had a failed job by raising that job's error, after all jobs ran: then
    that line ends the output, and the status is 1 all the same.)"""

    def __init__(self) -> None:
        self.jobs: list[dict] = []

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        if not sweeping():
            return
        folder = Path(job_return.hydra_cfg.hydra.runtime.output_dir)
        job = {"job": len(self.jobs), "overrides": list(job_return.overrides or []),
               "folder": str(folder)}
        if job_return.status == JobStatus.COMPLETED:
            job.update(status="completed", result=job_return.return_value)
        else:
            error = folder / ERROR_FILE
            job.update(status="failed", error=error.read_text().strip() if error.is_file()
                       else f"see {folder / 'train.log'}")
            log.error("job %d (%s) failed: %s", job["job"], " ".join(job["overrides"]),
                      job["error"])
        self.jobs.append(job)
        sweep = Path(HydraConfig.get().sweep.dir)
        (sweep / "summary.json").write_text(json.dumps(self.jobs, indent=2, default=str) + "\n")

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        failed = [j for j in self.jobs if j["status"] == "failed"]
        log.info("sweep: %d of %d jobs completed; summary in %s",
                 len(self.jobs) - len(failed), len(self.jobs),
                 Path(config.hydra.sweep.dir) / "summary.json")
        if failed:
            sys.exit(f"error: {len(failed)} of {len(self.jobs)} jobs failed: " + "; ".join(
                f"job {j['job']}: {j['error']}" for j in failed))
