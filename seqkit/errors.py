"""Which errors are the user's to fix, and the one line that tells them what and where."""
from __future__ import annotations

import os

from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException


def one_line(error: BaseException) -> str | None:
    """The message for a user's mistake (a bad value, file, path or flag), or None for a bug,
    which deserves its traceback."""
    from hydra.errors import InstantiationException
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        cause = error.__cause__  # what the constructor said, not Hydra's wrapping
        if isinstance(cause, TypeError):  # arguments the class does not take: the config's
            return f"{str(error).splitlines()[0].rstrip(':')}: {cause}"
        return one_line(cause)
    if isinstance(error, MissingMandatoryValue):
        key = error.full_key or "a key"
        return f"missing config value {key}: set it on the command line ({key}=...)"
    if isinstance(error, OSError) and error.filename is not None:  # names the path
        return f"{error.filename}: {error.strerror or error}"
    if isinstance(error, (ValueError, OSError, NonFiniteLoss, MisconfigurationException,
                          OmegaConfBaseException)):
        return first_line(error)
    return None


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss (``callbacks.StopOnNonFinite`` raises it)."""


def full_traceback_wanted() -> bool:
    """``HYDRA_FULL_ERROR=1`` (or ``--debug``, which sets it) shows every error in full."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def printable(text: str) -> str:
    """``text`` with its control characters escaped (``\\r``), so that it stays on one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def first_line(error: BaseException, skip: str = "") -> str:
    """The first informative line of an error's message (torch's and OmegaConf's run to many
    lines; OmegaConf's ``full_key`` line is kept), lines starting with ``skip`` left out."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not (skip and line.startswith(skip))] or lines
    keys = [line for line in lines[1:] if line.startswith("full_key")]
    return "; ".join(lines[:1] + keys)[:500] or type(error).__name__
