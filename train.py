"""Train a seqkit task: ``python train.py task=sentiment`` (``-m`` sweeps). See configs/."""
import os
import sys

import hydra
from omegaconf import DictConfig

from seqkit.callbacks import NonFiniteLoss
from seqkit.train import train


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except (FileNotFoundError, ValueError, NonFiniteLoss) as e:  # the message says what, where
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        sys.exit(f"error: {e}")
    return metrics.get(cfg.get("optimized_metric") or "")  # what an Optuna sweep optimizes


if __name__ == "__main__":
    main()
