"""Shuffling that a resumed run reproduces."""
from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def epoch_seed(epoch: int) -> int:
    """The seed of an epoch's randomness: the run's seed (``seed_everything``) and the epoch."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0)) + 7919 * epoch


class EpochShuffle(Sampler[int]):
    """A random permutation of range(n) that depends only on the run's seed and the epoch.

    With ``lengths`` and ``batch_size``, the permutation is cut into chunks of ``pool``
    batches and each chunk sorted by length, then its batches are shuffled: batches hold
    examples of similar length, so far less padding is computed, while each epoch still sees
    a different random grouping.

    torch's RandomSampler draws from the global generator, whose state at the start of an
    epoch differs between an uninterrupted run and one resumed from a checkpoint. Lightning
    calls ``set_epoch`` before each epoch; the seed is the one ``seed_everything`` set.
    """

    def __init__(self, n: int, lengths: list[int] | None = None, batch_size: int = 1,
                 pool: int = 50) -> None:
        self.n, self.epoch = n, 0
        self.lengths, self.batch_size, self.pool = lengths, batch_size, pool

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(epoch_seed(self.epoch))
        order = torch.randperm(self.n, generator=gen).tolist()
        if self.lengths is None:
            return iter(order)
        size, batches = self.batch_size * self.pool, []
        for start in range(0, self.n, size):
            chunk = sorted(order[start:start + size], key=self.lengths.__getitem__)
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk),
                                                                    self.batch_size)]
        # the one short batch goes last: in the middle it would shift every later batch
        picks = torch.randperm(len(batches), generator=gen).tolist()
        picks.sort(key=lambda b: len(batches[b]) < self.batch_size)  # stable: stays random
        return (i for b in picks for i in batches[b])
