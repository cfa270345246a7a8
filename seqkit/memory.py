"""Freed memory kept for reuse, so that large buffers do not page-fault in again at every call.

A training or evaluation step allocates buffers of the whole sequence (N rows x 4H gates: 13
MB at B32 T100 H256) and frees them at its end. glibc's malloc serves such blocks with mmap and
gives them back to the OS on free, or trims the heap's free top once it exceeds twice the
largest block seen; the next step then touches fresh pages, one page fault per 4 kB. On the
virtual machines this project measures on that is thousands of faults a step and 19-28% of a
layer-norm LSTM's time in the steps measured (docs/performance.md). jemalloc and tcmalloc,
which PyTorch's CPU tuning guide suggests for this, keep freed memory; ``keep_freed_memory``
asks glibc to do the same: every block comes from the heap (none from mmap: glibc's largest
mmap threshold, 32 MB, would leave bigger blocks, such as torch.nn's LSTM workspace of 51 MB at
B32 T100 H256, to be mapped and faulted in at every call), and the heap is not trimmed below
2 GB of free memory. The price is that the process keeps its high-water mark of memory.

``seqkit train`` and ``python train.py``, ``seqkit predict`` and the benchmarks call it at
start; research code may call ``seqkit.keep_freed_memory()``. ``SEQKIT_KEEP_FREED_MEMORY=0``
switches it off. Elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # mallopt's parameters (malloc.h)
TRIM = 2**31 - 1  # free heap top kept up to 2 GB
MMAP_CEILING = 32 * 2**20  # glibc's largest M_MMAP_THRESHOLD on 64-bit
# the same settings as environment variables, for processes seqkit does not start itself
ENVIRONMENT = {"MALLOC_TRIM_THRESHOLD_": str(TRIM), "MALLOC_MMAP_THRESHOLD_": str(MMAP_CEILING),
               "MALLOC_MMAP_MAX_": "0"}


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (see above); whether it took."""
    if not sys.platform.startswith("linux") or os.environ.get("SEQKIT_KEEP_FREED_MEMORY") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # no block from mmap (where the heap cannot grow, glibc still maps one as a fallback); the
    # threshold too, for a process where mmap is allowed again
    return all(mallopt(*setting) for setting in [(M_TRIM_THRESHOLD, TRIM), (M_MMAP_MAX, 0),
                                                 (M_MMAP_THRESHOLD, MMAP_CEILING)])
