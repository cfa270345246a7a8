"""Many-to-one classification (sentiment): cross-entropy, accuracy and macro-F1."""
from __future__ import annotations

import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from .base import Task


class ClassificationTask(Task):
    """Batches are dicts with ``tokens`` (B, T), ``lengths`` (B,) and ``labels`` (B,); the
    model says its ``num_classes``."""

    def __init__(self, model, optimizer, scheduler=None, monitor: str = "val/acc",
                 artifacts: dict | None = None) -> None:
        super().__init__(model, optimizer, scheduler, monitor, artifacts)
        num_classes = model.num_classes
        metrics = MetricCollection({"acc": MulticlassAccuracy(num_classes, average="micro"),
                                    "f1": MulticlassF1Score(num_classes, average="macro")})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.confusion = MulticlassConfusionMatrix(num_classes)

    def forward(self, tokens, lengths):
        return self.model(tokens, lengths)

    def _loss(self, batch, stage: str):
        logits = self(batch["tokens"], batch["lengths"])
        loss = F.cross_entropy(logits, batch["labels"])
        self.log(f"{stage}/loss", loss, prog_bar=stage == "train", batch_size=len(logits),
                 sync_dist=stage != "train")
        return loss, logits

    def training_step(self, batch, batch_idx):
        return self._loss(batch, "train")[0]

    def validation_step(self, batch, batch_idx):
        _, logits = self._loss(batch, "val")
        self.val_metrics.update(logits, batch["labels"])

    def on_validation_epoch_end(self):
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self.val_metrics.reset()

    def test_step(self, batch, batch_idx):
        _, logits = self._loss(batch, "test")
        self.test_metrics.update(logits, batch["labels"])
        self.confusion.update(logits, batch["labels"])

    def on_test_epoch_end(self):
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()
        matrix = self.confusion.compute().cpu()
        self.confusion.reset()
        folder = self.run_folder()
        if folder:
            from ..plots import confusion_matrix

            confusion_matrix(matrix, self.artifacts.get("labels"),
                             folder / "plots" / "confusion_matrix.png")
