"""The LSTM kernel's time loop in C++ (``csrc/lstm.cpp``), built on first use.

Between its recurrent products, a step of the LSTM kernel runs a dozen small elementwise ops
forward and twice that backward, each a pass over the step's rows and a dispatcher round trip;
with layer norm, two more reductions each way; and the Python between them does not shrink
with more threads. ``csrc/lstm.cpp`` runs the loop itself, calling the products (oneDNN's
brgemm kernel, its linear or at::mm) and zoneout's and the projection's ops from C++, and
does each step's gate math in one pass over each row, vectorised with ATen's own SIMD types
for the CPU torch runs on, its rows split over torch's threads. torch's ``cpp_extension``
compiles it once per machine (about half a minute; cached under ``TORCH_EXTENSIONS_DIR``, by
default ``~/.cache/torch_extensions``).

The same module draws zoneout's masks (``seqkit.noise``) on all threads.

Where it cannot be built (no C++ compiler, say) or is switched off (``SEQKIT_NATIVE=0``), the
kernel runs the same equations as torch ops, and the masks are the same integers from torch
ops; a warning says so once.
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import sysconfig
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "lstm.cpp"
# compiler flags for the SIMD width torch's own kernels use on this CPU (ATen's vec headers
# pick their types from the CPU_CAPABILITY_* macro)
ISA_FLAGS = {"AVX512": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mfma"],
             "AVX2": ["-mavx2", "-mfma"]}


@functools.cache
def module():
    """The compiled extension, or None (with a warning, once) where it is unavailable."""
    if os.environ.get("SEQKIT_NATIVE", "1") == "0":
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    flags = ISA_FLAGS.get(capability, [])
    defines = [f"-DCPU_CAPABILITY={capability}"]
    if flags:
        defines.append(f"-DCPU_CAPABILITY_{capability}")
    if torch.backends.openmp.is_available():  # at::parallel_for is OpenMP pragmas in ATen's
        flags = [*flags, "-fopenmp"]  # headers: without the flag it runs on one thread (the
        # symbols resolve to the OpenMP runtime torch has loaded, so both share one pool)
    if shutil.which("ninja") is None:  # pip's ninja, in this environment's scripts folder
        os.environ["PATH"] = os.pathsep.join([sysconfig.get_path("scripts"), os.environ["PATH"]])
    try:
        from torch.utils.cpp_extension import load

        log.info("loading seqkit's C++ LSTM kernel (built the first time on a machine, about "
                 "half a minute)")
        return load(f"seqkit_lstm_{capability.lower()}", [str(SOURCE)],
                    extra_cflags=["-O3", *flags, *defines])
    except Exception as e:  # no compiler or ninja, a failed build: the torch-op path
        log.warning("seqkit's C++ LSTM kernel is unavailable, so the LSTM kernel runs its loop "
                    "as torch ops, 1.1-2.7x as slow (docs/performance.md): %s",
                    str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__)
        return None


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the C++ code serves these tensors: float32 or float64 (one dtype) on CPU,
    eager."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    return (all(t.device.type == "cpu" and t.dtype == tensors[0].dtype for t in tensors)
            and tensors[0].dtype in (torch.float32, torch.float64) and module() is not None)
