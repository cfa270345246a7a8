"""Zoneout's masks: SplitMix64, the same from C++ and from torch ops, at the asked rate."""
import math

import pytest
import torch

from seqkit import noise
from seqkit.kernels import native

needs_cpp = pytest.mark.skipif(native.module() is None, reason="the C++ extension is unavailable")


def test_splitmix_gives_the_published_first_outputs():
    """SplitMix64 from seed 0 starts 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4,
    0x06c45d188009454f (the reference implementation's outputs); these are their top halves."""
    assert noise.splitmix(torch.tensor(0), 3).tolist() == [0xE220A839, 0x6E789E6A, 0x06C45D18]


@needs_cpp
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_the_cpp_mask_equals_the_torch_op_mask(dtype, threads, monkeypatch):
    """4001 x 53 entries, not a multiple of a vector's lanes (the loop's scalar tail runs),
    split over two threads in the second case."""
    like, before = torch.empty(0, dtype=dtype), torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(3)
        in_cpp = noise.bernoulli(4001, 53, 0.3, like)
    finally:
        torch.set_num_threads(before)
    monkeypatch.setattr(native, "module", lambda: None)
    torch.manual_seed(3)
    torch_ops = noise.bernoulli(4001, 53, 0.3, like)
    assert in_cpp.dtype == torch_ops.dtype == dtype
    assert torch.equal(in_cpp, torch_ops)


@pytest.mark.parametrize("p", [0.02, 0.1, 0.5, 0.9])
def test_masks_are_bernoulli_with_the_rate(p):
    n = 200 * 257
    mask = noise.bernoulli(200, 257, p, torch.empty(0))
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert abs(mask.mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
    # neighbours are independent: a pair of adjacent entries is both 1 with probability p²
    both = (mask[:, 1:] * mask[:, :-1]).mean().item()
    assert abs(both - p * p) < 5 * math.sqrt(p * p * (1 - p * p) / n)


def test_torch_manual_seed_fixes_the_masks_and_each_draw_is_fresh():
    torch.manual_seed(0)
    a, b = (noise.bernoulli(64, 32, 0.5, torch.empty(0)) for _ in range(2))
    torch.manual_seed(0)
    assert torch.equal(noise.bernoulli(64, 32, 0.5, torch.empty(0)), a)
    assert not torch.equal(a, b)
