"""seqkit.keep_freed_memory: a layer's buffers are reused from step to step, not handed back to
the OS and page-faulted in again."""
import os
import subprocess
import sys

import pytest

import seqkit

# Ten training steps of a layer-norm LSTM on one thread (buffers of 6.5 MB); the page faults of
# the last four
STEPS = """
import resource, torch, seqkit, seqkit.nn
print(seqkit.keep_freed_memory())
torch.set_num_threads(1)
layer, x = seqkit.nn.LSTM(64, 256, layer_norm=True), torch.randn(100, 16, 64)
faults = []
for _ in range(10):
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
    layer(x)[0].sum().backward()
print(faults[-1] - faults[-5])
"""


def _steps(keep: bool) -> tuple[str, int]:
    env = {**os.environ, "SEQKIT_KEEP_FREED_MEMORY": "1" if keep else "0"}
    took, faults = subprocess.run([sys.executable, "-c", STEPS], env=env, capture_output=True,
                                  text=True, check=True).stdout.split()
    return took, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_training_steps_reuse_freed_memory_without_page_faults():
    took, faults = _steps(keep=True)
    assert took == "True" and faults < 100
    took, faults = _steps(keep=False)  # glibc's default: thousands a step (6,000-8,000 here)
    assert took == "False" and faults > 4000
    assert seqkit.keep_freed_memory() is seqkit.keep_freed_memory()  # once a process
