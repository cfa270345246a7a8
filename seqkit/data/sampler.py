"""Shuffling that a resumed run reproduces."""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's randomness, from the run's ``seed`` and the epoch."""
    return seed + 7919 * epoch


class EpochShuffle(DistributedSampler):
    """A random permutation of range(n) that depends only on ``seed`` (the run's) and the epoch.

    With ``lengths`` (a list, an array or a tensor) and ``batch_size``, the permutation is cut into chunks of ``pool``
    batches and each chunk sorted by length, then its batches are shuffled: batches hold
    examples of similar length, so far less padding is computed, while each epoch still sees
    a different random grouping.

    torch's RandomSampler draws from the global generator, whose state at the start of an
    epoch differs between an uninterrupted run and one resumed from a checkpoint. Lightning
    calls ``set_epoch`` before each epoch.

    Under DDP (``world_size`` processes) the batches are pooled and shuffled at the global
    size ``batch_size * world_size`` and process ``rank`` takes every world_size-th example of
    each, so a step sees the examples one process with the global batch would (a short last
    batch is topped up with its own first examples, so every process steps alike). It is a
    ``DistributedSampler`` so that Lightning keeps it instead of reshuffling its order.
    """

    def __init__(self, n: int, lengths=None, batch_size: int = 1,
                 pool: int = 50, rank: int = 0, world_size: int = 1, seed: int = 0) -> None:
        super().__init__(range(n), num_replicas=world_size, rank=rank, shuffle=False, seed=seed)
        self.n, self.epoch = n, 0
        self.lengths, self.batch_size, self.pool = lengths, batch_size, pool

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.num_replicas)

    def _global_batches(self) -> Iterator[list[int]]:
        """The epoch's global batches. The order is one tensor, each pool of it sorted by
        length (ties kept), and a batch is a slice of it: no object per batch is made
        before it is needed, which matters at millions of examples."""
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.n, generator=gen)
        size = self.batch_size * self.num_replicas
        starts = list(range(0, self.n, size))
        if self.lengths is None:
            picks = range(len(starts))
        else:
            lengths, span = torch.as_tensor(self.lengths), size * self.pool
            for start in range(0, self.n, span):
                chunk = order[start:start + span]
                order[start:start + span] = chunk[lengths[chunk].sort(stable=True).indices]
            # the one short batch goes last: in the middle it would shift every later batch
            picks = torch.randperm(len(starts), generator=gen).tolist()
            picks.sort(key=lambda b: self.n - starts[b] < size)  # stable: stays random
        for b in picks:
            yield order[starts[b]:starts[b] + size].tolist()

    def __iter__(self) -> Iterator[int]:
        world = self.num_replicas
        for batch in self._global_batches():
            batch = batch + (batch * world)[:-len(batch) % world]  # equal shares for all
            yield from batch[self.rank::world]
