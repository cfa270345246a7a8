"""Zoneout's masks, drawn in parallel: SplitMix64 from a seed torch's generator draws.

Zoneout needs a fresh 0/1 draw per state entry and step (C1: 100 x 32 x 256). torch's CPU
generator, a Mersenne Twister, draws one number at a time on one thread: about 1.8 ms for a
C1 mask (``torch.rand(...) < rate``), which does not shrink with threads. Here entry k of a
mask is SplitMix64's k-th output (Steele, Lea and Flood 2014, Java's SplittableRandom) from a
64-bit seed drawn from torch's generator (the CUDA one for a mask on CUDA), so
``torch.manual_seed`` fixes the masks as before; each output is a hash of its counter, so any
thread can draw any part of a mask. On CPU the C++ extension draws it (vectorised, split over
torch's threads); elsewhere, or without the extension, the same integers come from torch's
int64 ops (a test checks both against each other and against SplitMix64's published first
outputs).
"""
from __future__ import annotations

import torch
from torch import Tensor

GAMMA, MIX_1, MIX_2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _int64(c: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits."""
    return c - (1 << 64) if c >= 1 << 63 else c


def _shr(z: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 z (torch's >> is arithmetic)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def splitmix(seed: Tensor, count: int) -> Tensor:
    """The top 32 bits (int64, in [0, 2^32)) of SplitMix64's outputs 1..count from ``seed``
    (a 0-dim int64 tensor), as torch ops: integer products wrap as the C++ ones do."""
    z = seed + torch.arange(1, count + 1, device=seed.device) * _int64(GAMMA)
    z = (z ^ _shr(z, 30)) * _int64(MIX_1)
    z = (z ^ _shr(z, 27)) * _int64(MIX_2)
    return _shr(z ^ _shr(z, 31), 32)


def bernoulli(rows: int, n: int, p: float, like: Tensor) -> Tensor:
    """A (rows, n) tensor of ``like``'s dtype and device: each entry 1 with probability p
    (to 2^-32), else 0, independently."""
    from .kernels import native

    threshold = round(p * 2**32)
    if native.usable(like):
        out = like.new_empty(rows, n)
        seed = torch.randint(1 << 62, (), dtype=torch.int64)  # torch's generator, as torch.rand
        native.module().bernoulli(out, seed.item(), threshold)
        return out
    # the seed from like's device's generator, where it stays: on CUDA no round trip to the
    # host, and a CUDA graph that captured the draw draws afresh at each replay
    seed = torch.randint(1 << 62, (), dtype=torch.int64, device=like.device)
    return (splitmix(seed, rows * n) < threshold).view(rows, n).to(like.dtype)
