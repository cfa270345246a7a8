"""Train a seqkit task: ``python train.py task=sentiment`` (``-m`` sweeps). See configs/."""
import hydra
from omegaconf import DictConfig

from seqkit.train import train


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric") or "")  # what an Optuna sweep optimizes


if __name__ == "__main__":
    main()
