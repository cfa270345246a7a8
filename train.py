"""Train a seqkit task: ``python train.py task=sentiment`` (``-m`` sweeps). See configs/.

A user's error ends the run with one line and status 1; ``--debug`` (or
``HYDRA_FULL_ERROR=1``) shows the full traceback instead."""
import os
import sys

import hydra
from omegaconf import DictConfig

from seqkit.runs import run


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
        os.environ["HYDRA_FULL_ERROR"] = "1"
    main()
