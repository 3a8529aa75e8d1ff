"""What CPU this is: its model and widest vector extension, which every recorded speed figure states and
some speed choices depend on (execution.py), and the XLA flags chosen from it before TensorFlow loads."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

# XLA:CPU emits 256-bit vector code by default, on AVX-512 CPUs too (Intel's cores drop their clock under
# 512-bit work). On an AVX-512 AMD EPYC, ours over PyTorch in pooled paired slices of three processes per
# setting, 512-bit against 256-bit: LSTM 1x128 rows trained at 1.00 [0.97-1.04] against 0.95 [0.92-0.99]
# and scored at 1.06 [1.00-1.13] against 0.93 [0.91-0.98]; 2x128 rows 0.96 [0.92-0.97] against 0.93
# [0.92-1.00] and 0.97 [0.94-0.99] against 0.99 [0.96-1.02], no worse (scripts/threads_probe.py --settings
# one-256 one-512, docs/bench/2026-12-04-epyc-avx512-vector-width.json). So XLA_FLAGS gets it there
# (`planned_xla_flags`) unless the user's own XLA_FLAGS set a width. Intel's AVX-512 CPUs: not measured.
WIDE_VECTOR_FLAG = "--xla_cpu_prefer_vector_width=512"
WIDE_VECTOR_VENDOR = "AMD"


@functools.cache
def cpu_facts() -> tuple[str, str]:
    """(CPU model, widest vector extension: "AVX-512", "AVX2" or "no AVX2"), read once per process."""
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:  # not Linux: the platform's own name is all there is
        return model, "unknown vector extensions"
    return model, "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"


def planned_xla_flags(flags: str) -> str:
    """XLA_FLAGS for a new process, from the user's (`flags`): 512-bit vectors added on an AVX-512 AMD CPU
    unless `flags` choose a width (see WIDE_VECTOR_FLAG). Read before TensorFlow loads (tf_import.py)."""
    model, vector = cpu_facts()
    if vector != "AVX-512" or WIDE_VECTOR_VENDOR not in model or "xla_cpu_prefer_vector_width" in flags:
        return flags
    return f"{flags} {WIDE_VECTOR_FLAG}".strip()


def cpu_vector() -> str:
    """The CPU's widest vector extension: speed choices differ between AVX2 and AVX-512."""
    return cpu_facts()[1]


def cpu_description() -> str:
    """The CPU model and its widest vector extension, as every recorded figure states it."""
    model, vector = cpu_facts()
    return f"{model} ({vector}, {os.cpu_count()} logical CPUs)"
