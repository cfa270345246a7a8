"""seqkit.keep_freed_memory: a layer's buffers are reused from step to step, not handed back to
the OS and page-faulted in again."""
import os
import statistics
import subprocess
import sys

import pytest

import seqkit

# Twelve training steps of a layer-norm LSTM on one thread (buffers of 6.5 MB) and a block of
# 64 MB (over the largest mmap threshold glibc takes, 32 MB); the page faults of each of the
# last eight
STEPS = """
import resource, torch, seqkit, seqkit.nn
print(seqkit.keep_freed_memory())
torch.set_num_threads(1)
layer, x = seqkit.nn.LSTM(64, 256, layer_norm=True), torch.randn(100, 16, 64)
faults = []
for _ in range(13):
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
    layer(x)[0].sum().backward()
    torch.ones(2**24)
print(*(b - a for a, b in zip(faults[-9:], faults[-8:])))
"""


# glibc's default thresholds (128 kB), held there: by default glibc raises them as it sees large
# blocks freed, by an amount that depends on the process's history, so that an untuned process
# page-faults thousands of times a step in some runs and not at all in others
GLIBC_DEFAULTS = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072",
                  "MALLOC_MMAP_MAX_": "65536"}


def _steps(keep: bool) -> tuple[str, float]:
    """Whether the setting took, and the median of the page faults per step."""
    env = {**os.environ, **GLIBC_DEFAULTS, "SEQKIT_KEEP_FREED_MEMORY": "1" if keep else "0"}
    took, *faults = subprocess.run([sys.executable, "-c", STEPS], env=env, capture_output=True,
                                   text=True, check=True).stdout.split()
    return took, statistics.median(map(int, faults))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_training_steps_reuse_freed_memory_without_page_faults():
    # medians: a step now and then faults on this machine with the setting too (once 1,600)
    took, faults = _steps(keep=True)
    assert took == "True" and faults < 100  # medians 0-1 measured (the setting overrides them)
    took, faults = _steps(keep=False)  # glibc's defaults: thousands a step
    assert took == "False" and faults > 1000  # medians about 13,000 measured
    assert seqkit.keep_freed_memory() is seqkit.keep_freed_memory()  # once a process
