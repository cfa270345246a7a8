"""The splits and loaders every seqkit data module shares."""
from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from .sampler import EpochShuffle

SPLITS = ("train", "val", "test")
STAGES = {None: SPLITS, "fit": ("train", "val"), "validate": ("val",), "test": ("test",),
          "predict": ()}


class SplitDataModule(pl.LightningDataModule):
    """A standard dataset by name, or the user's ``files`` ({train, val, test}; test may be
    left out or null), read one split at a time into ``self.splits`` and batched with
    ``self.collate``; training order is reproducible on resume.

    What encoding needs from the training split (vocabulary, labels, tokenizer) is learnt by
    ``fit`` the first time any split is needed, or taken from a checkpoint by ``restore``:
    then ``setup("test")`` reads the test file alone. A module defines ``read_file`` (one
    split of the user's), ``read_all`` (a standard dataset's three splits at once), ``fit``,
    ``encode`` (one split's raw examples -> what its loader draws), ``restore``.
    """

    batch_size: int = 32
    num_workers: int = 0
    shuffle_seed: int = 0          # the run's seed, set by train(cfg): with the epoch, the order
    task: str                      # artifacts()' "task"
    predictor: str                 # the seqkit.inference class that uses a trained model
    plain: tuple[str, ...] = ()    # artifacts that restore() copies as they are

    def __init__(self, dataset: str | None, files, usage: str) -> None:
        super().__init__()
        if (dataset is None) == (files is None):
            raise ValueError(usage)
        if isinstance(files, Mapping):
            for name in ("train", "val"):
                if files.get(name) is None:  # also a config's ??? left unset
                    raise ValueError(f"data.files.{name} is required")
        self.dataset, self.files = dataset, files
        self.splits: dict[str, list] = {}
        self.fitted = False      # set by fit or restore
        self._whole: dict = {}   # a standard dataset's splits read but not yet encoded

    def read_file(self, spec, split: str):  # pragma: no cover - each module reads its files
        raise NotImplementedError

    def read_all(self) -> dict:  # pragma: no cover
        raise NotImplementedError

    def fit(self, train) -> None:
        """Learn what encoding needs from the training split's raw examples (default: none)."""

    def encode(self, raw, split: str):  # pragma: no cover
        raise NotImplementedError

    def has_split(self, name: str) -> bool:
        """Whether split ``name`` exists: a standard dataset (or LMData's single text) has all
        three; of the user's files, train and val are required and test may be left out."""
        return not isinstance(self.files, Mapping) or self.files.get(name) is not None

    def read(self, split: str):
        """A split's raw examples: its file(s), or a standard dataset's split (whose loader
        reads all three at once: the others wait in memory until they are needed)."""
        if isinstance(self.files, Mapping):
            return self.read_file(self.files[split], split)
        if split not in self._whole:
            self._whole = self.read_all()
        return self._whole.pop(split)

    def split(self, name: str):
        """Split ``name`` encoded, read on first use; the first split needed reads the
        training split first, to ``fit``, unless ``restore`` came before."""
        if name not in self.splits:
            if not self.has_split(name):
                raise ValueError(f"there is no {name} split: data.files.{name} is not given")
            if not self.fitted:
                train = self.read("train")
                self.fit(train)
                self.fitted = True
                self.splits["train"] = self.encode(train, "train")
            if name not in self.splits:
                self.splits[name] = self.encode(self.read(name), name)
        return self.splits[name]

    def setup(self, stage: str | None = None) -> None:
        """Load the splits of ``stage``: fit: train and val; validate: val; test: test;
        None: every split there is. A split is read once; setup again reads nothing."""
        for name in STAGES[stage]:
            if stage is not None or self.has_split(name):
                self.split(name)

    def restore(self, artifacts: dict) -> None:
        """Take what ``fit`` would learn from ``artifacts`` (the dict ``artifacts()`` returns,
        as a checkpoint stores it), so that val and test are encoded as at training time
        without reading the training file. Subclasses turn the stored states into objects."""
        if artifacts.get("task") != self.task:
            raise ValueError(f"{type(self).__name__} cannot restore the artifacts of a "
                             f"{artifacts.get('task')!r} checkpoint (expected {self.task!r})")
        for key in self.plain:  # one an older checkpoint lacks keeps its configured value
            setattr(self, key, artifacts.get(key, getattr(self, key)))
        self.fitted = True

    def collate(self, items: list):  # pragma: no cover - each module defines its batches
        raise NotImplementedError

    def length(self, item) -> int:  # pragma: no cover - each module knows its examples
        """An example's length, for batching similar lengths together in training."""
        raise NotImplementedError

    def lengths(self, split: str):
        """Each example's ``length`` in split ``split`` (a module may keep them as an array)."""
        return [self.length(x) for x in self.split(split)]

    def split_dataset(self, split: str):
        """What a split's loader draws from (a module may wrap it, e.g. to augment)."""
        return self.splits[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        lengths = self.lengths(split) if shuffle else None
        data = self.split_dataset(split)
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer \
            else (0, 1)  # under DDP each process takes its share of every global batch
        sampler = (EpochShuffle(len(data), lengths, self.batch_size, rank=rank, world_size=world,
                                seed=self.shuffle_seed) if shuffle else None)
        return DataLoader(data, batch_size=self.batch_size, collate_fn=self.collate,
                          sampler=sampler,
                          num_workers=self.num_workers, generator=torch.Generator())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
