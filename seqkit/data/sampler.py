"""Shuffling that a resumed run reproduces."""
from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochShuffle(Sampler[int]):
    """A random permutation of range(n) that depends only on the run's seed and the epoch.

    torch's RandomSampler draws from the global generator, whose state at the start of an
    epoch differs between an uninterrupted run and one resumed from a checkpoint. Lightning
    calls ``set_epoch`` before each epoch; the seed is the one ``seed_everything`` set.
    """

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) + 7919 * self.epoch
        return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(seed)).tolist())
