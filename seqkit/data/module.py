"""The loaders every seqkit data module shares."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from .sampler import EpochShuffle


class SplitDataModule(pl.LightningDataModule):
    """A data module whose ``setup`` fills ``self.splits`` (train/val/test lists of examples)
    and which batches them with ``self.collate``; training order is reproducible on resume."""

    batch_size: int = 32
    num_workers: int = 0
    splits: dict[str, list]

    def collate(self, items: list):  # pragma: no cover - each module defines its batches
        raise NotImplementedError

    def length(self, item) -> int:  # pragma: no cover - each module knows its examples
        """An example's length, for batching similar lengths together in training."""
        raise NotImplementedError

    def split_dataset(self, split: str):
        """What a split's loader draws from (a module may wrap it, e.g. to augment)."""
        return self.splits[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        data, lengths = self.split_dataset(split), [self.length(x) for x in self.splits[split]]
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer \
            else (0, 1)  # under DDP each process takes its share of every global batch
        sampler = (EpochShuffle(len(data), lengths, self.batch_size, rank=rank, world_size=world)
                   if shuffle else None)
        return DataLoader(data, batch_size=self.batch_size, collate_fn=self.collate,
                          sampler=sampler,
                          num_workers=self.num_workers, generator=torch.Generator())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
