"""EpochShuffle: length-pooled batches, reproducible per seed and epoch, the same global
batches under DDP."""
from seqkit.data.classification import SentimentData
from seqkit.data.sampler import EpochShuffle


def test_length_pooled_batches_are_reproducible_and_homogeneous():
    lengths = [1 + (i * 7919) % 50 for i in range(1000)]
    sampler = EpochShuffle(len(lengths), lengths, batch_size=32, pool=10)
    first = list(sampler)
    assert sorted(first) == list(range(1000)) and first == list(sampler)
    batches = [first[i:i + 32] for i in range(0, 1000, 32)]
    assert len(batches[-1]) == 1000 % 32  # the short batch comes last
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches[:-1]]
    # a pool of 320 examples over 50 lengths: about 6 lengths per batch (the last, partial
    # pool holds only 40 examples, so one batch may spread wider)
    assert sorted(spread)[-2] <= 10
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_under_ddp_each_step_holds_the_single_process_batch():
    lengths = [1 + (i * 7919) % 50 for i in range(101)]
    one = list(EpochShuffle(101, lengths, batch_size=16, pool=2))
    ranks = [list(EpochShuffle(101, lengths, batch_size=8, pool=2, rank=r, world_size=2))
             for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 51  # the odd example out is repeated
    for step in range(7):  # six full batches, then the short one (5 examples, one repeated)
        shares = [r[8 * step:8 * step + 8] for r in ranks]
        assert set(shares[0] + shares[1]) == set(one[16 * step:16 * step + 16])
    assert len(ranks[0][48:]) == 3
    # three processes and a last batch shorter than three: every share as long as __len__
    shares = [list(EpochShuffle(13, None, batch_size=2, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shares] == [5, 5, 5] and set(sum(shares, [])) == set(range(13))
    assert sorted(set(ranks[0] + ranks[1])) == list(range(101))


def test_an_epochs_order_depends_on_the_seed_it_is_given_and_the_epoch(monkeypatch, tiny_files):
    def order(seed: int, epoch: int) -> list[int]:
        sampler = EpochShuffle(40, list(range(40)), batch_size=4, pool=2, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    first = order(1, 0)
    monkeypatch.setenv("PL_GLOBAL_SEED", "99")  # what seed_everything sets: not read
    assert order(1, 0) == first and order(2, 0) != first and order(1, 1) != first
    data = SentimentData(None, {k: str(v) for k, v in tiny_files.items()}, batch_size=16)
    data.shuffle_seed = 1
    one = list(data.train_dataloader().sampler)
    data.shuffle_seed = 2
    assert list(data.train_dataloader().sampler) != one
