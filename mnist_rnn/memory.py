"""Keep the large blocks TensorFlow frees between training steps inside the process.

glibc's malloc returns every freed block above its mmap threshold (and the free top of the heap above its
trim threshold) to the kernel, and TensorFlow frees and reallocates its large activation and gradient
buffers every step, so each step page-faults them in again. On 2 vCPUs (AMD EPYC, AVX2) that was measured
in issue #16 as a fifth of a training run's time in the kernel (213 s system of 712 s wall, 61 million minor
faults for configs/default.yaml). Raising the thresholds with `mallopt` (what the MALLOC_*_ environment
variables do, but set by the program itself, before TensorFlow allocates) keeps those pages mapped: the
price is that up to the trim threshold of freed memory stays in the process's resident size.
`MNIST_RNN_MALLOC=default` leaves glibc's defaults alone; on a libc without `mallopt` nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt's parameter numbers, from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {
    M_MMAP_THRESHOLD: 256 * 1024 * 1024,  # blocks below this come from the heap, not a fresh mmap each time
    M_TRIM_THRESHOLD: 1024 * 1024 * 1024,  # give free heap back to the kernel only past 1 GiB
    M_TOP_PAD: 256 * 1024 * 1024,  # grow the heap in large steps
}
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply SETTINGS once per process; True if glibc took them."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get("MNIST_RNN_MALLOC") == "default":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        libc = None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:  # not glibc (musl, macOS): their allocators behave differently
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS.items())
