"""Sequence tagging (NER): CRF or softmax loss, entity-level F1 as conlleval computes it."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..layers import length_mask
from ..metrics.spans import SpanF1
from .base import Task


class TaggingTask(Task):
    """Batches hold ``words``, ``cases``, ``tags`` (B, T), ``chars`` (B, T, L), ``lengths``;
    the model says its ``tag_names`` and ``scheme``."""

    def __init__(self, model, optimizer, scheduler=None, monitor: str = "val/f1",
                 artifacts: dict | None = None) -> None:
        super().__init__(model, optimizer, scheduler, monitor, artifacts)
        self.val_f1 = SpanF1(model.tag_names, model.scheme)
        self.test_f1 = SpanF1(model.tag_names, model.scheme)

    def forward(self, batch):
        return self.model(batch["words"], batch["cases"], batch["chars"], batch["lengths"])

    @staticmethod
    def _mask(batch) -> torch.Tensor:
        return length_mask(batch["lengths"], batch["words"].size(1), batch["words"].device)

    def training_step(self, batch, batch_idx):
        loss = self.model.loss(self(batch), batch["tags"], self._mask(batch))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["lengths"]))
        return loss

    def _evaluate(self, batch, stage: str, metric: SpanF1) -> None:
        mask = self._mask(batch)
        scores = self(batch)
        loss = self.model.loss(scores, batch["tags"], mask)
        self.log(f"{stage}/loss", loss, batch_size=len(batch["lengths"]), sync_dist=True)
        metric.update(self.model.decode(scores, mask), batch["tags"], batch["lengths"])

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self.val_f1)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test", self.test_f1)

    def _log_scores(self, stage: str, metric: SpanF1) -> dict:
        scores = metric.compute()
        metric.reset()
        self.log_dict({f"{stage}/{k}": scores[k] for k in ("f1", "precision", "recall")},
                      prog_bar=stage == "val")
        return scores

    def on_validation_epoch_end(self):
        self._log_scores("val", self.val_f1)

    def on_test_epoch_end(self):
        scores = self._log_scores("test", self.test_f1)
        folder = self.run_folder()
        if folder:
            write_type_table(scores, folder)


def write_type_table(scores: dict, folder: Path) -> None:
    """Per-entity-type precision, recall, F1 and support, as Markdown and JSON."""
    rows = ["| type | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name, s in sorted(scores["per_type"].items()):
        rows.append(f"| {name} | {100 * s['precision']:.2f} | {100 * s['recall']:.2f} | "
                    f"{100 * s['f1']:.2f} | {int(s['support'])} |")
    rows.append(f"| **all** | {100 * float(scores['precision']):.2f} | "
                f"{100 * float(scores['recall']):.2f} | {100 * float(scores['f1']):.2f} | |")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "entity_scores.md").write_text("\n".join(rows) + "\n")
    (folder / "entity_scores.json").write_text(json.dumps(scores, indent=2, default=float) + "\n")
