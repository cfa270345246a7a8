"""``build(cfg)``: the data, model and task that a run's config describes, assembled one way
for training (``seqkit.train``), evaluation (``seqkit evaluate``) and the tests.

The data says what the model needs from it (``data.dims()``: vocabulary sizes, labels, ...),
the model gets exactly that, and the task gets the model; a config argument that the class
does not take (a misspelling) is an error, never dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn


@dataclass
class Built:
    data: object
    model: nn.Module
    task: object


def build(cfg: DictConfig, stages: tuple[str, ...] = ("fit",), seed: int | None = None,
          model: nn.Module | None = None, artifacts: dict | None = None) -> Built:
    """The data module (set up for ``stages``), the model and the task of ``cfg``.

    ``seed``: the run's, for the data's epoch shuffles. ``model`` and ``artifacts``: a trained
    model and its checkpoint's artifacts (``seqkit.predict.load``), used instead of a new
    model, with the data restored to its vocabularies. A new model starts from the data's
    pretrained parts (``data.init_model``: word vectors, the notes' prior).
    """
    data = instantiate(cfg.data)
    if seed is not None:
        data.shuffle_seed = seed  # set, not passed: a data module's own ``seed`` splits it
    if artifacts is not None and hasattr(data, "restore"):
        data.restore(artifacts)
    for stage in stages:
        data.setup(stage)
    if model is None:
        dims = data.dims()
        model = instantiate(cfg.model, **dims)
        if hasattr(data, "init_model"):
            data.init_model(model)
        artifacts = {"model": {**OmegaConf.to_container(cfg.model, resolve=True), **dims},
                     "predictor": data.predictor, **data.artifacts()}
    task = instantiate(cfg.module, model=model)
    task.artifacts = artifacts  # set, not passed: instantiate would build the model config
    return Built(data, model, task)
