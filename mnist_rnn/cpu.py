"""What CPU this is: its model and widest vector extension, which every recorded speed figure states, and
the XLA flags chosen from it before TensorFlow loads."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

from mnist_rnn.errors import UsageError

# XLA:CPU emits 256-bit vector code by default, on AVX-512 CPUs too (Intel's cores drop their clock under
# 512-bit work). On an AVX-512 AMD EPYC, ours over PyTorch in pooled paired slices of three processes per
# setting, 512-bit against 256-bit: LSTM 1x128 rows trained at 1.00 [0.97-1.04] against 0.95 [0.92-0.99]
# and scored at 1.06 [1.00-1.13] against 0.93 [0.91-0.98]; 2x128 rows 0.96 [0.92-0.97] against 0.93
# [0.92-1.00] and 0.97 [0.94-0.99] against 0.99 [0.96-1.02], no worse (scripts/threads_probe.py --settings
# one-256 one-512, docs/bench/2026-12-04-epyc-avx512-vector-width.json). So XLA_FLAGS gets it there
# (`planned_xla_flags`) unless the user's own XLA_FLAGS set a width. Intel's AVX-512 CPUs: not measured.
WIDE_VECTOR_FLAG = "--xla_cpu_prefer_vector_width=512"
WIDE_VECTOR_VENDOR = "AMD"

# A developers' switch, never needed to train: MNIST_RNN_CPU_ISA=AVX2 on an AVX-512 CPU plans and compiles
# as on an AVX2 one, so speed choices can be measured for AVX2 where only an AVX-512 machine is at hand:
# XLA (`--xla_cpu_max_isa`, and no 512-bit vectors) and oneDNN are held to AVX2 instructions and so, for
# the bench's PyTorch side in the same process, are ATen and MKL (`capped_env`). It is the same core with
# fewer instructions, not an AVX2 machine's caches and clocks: every figure says so ("AVX2, capped from
# AVX-512", `cpu_description`). TensorFlow's Eigen kernels are built for AVX, the same code on either kind.
ISA_CAP_ENV = "MNIST_RNN_CPU_ISA"
ISA_CAP = "AVX2"
_CAPPED_LIBRARIES = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}


def cpu_facts() -> tuple[str, str]:
    """(CPU model, widest vector extension: "AVX-512", "AVX2" or "no AVX2"), AVX2 where an AVX-512 CPU is
    capped (ISA_CAP_ENV); the CPU is read once per process (`detected_cpu_facts`)."""
    model, vector = detected_cpu_facts()
    return model, ISA_CAP if vector == "AVX-512" and isa_capped() else vector


def isa_capped() -> bool:
    """Whether ISA_CAP_ENV asks for AVX2 on an AVX-512 CPU (another value is an error: there is no other
    cap; on a narrower CPU there is nothing to cap)."""
    value = os.environ.get(ISA_CAP_ENV, "")
    if value.upper() not in ("", ISA_CAP):
        raise UsageError(f"{ISA_CAP_ENV}={value!r} is not known: set it to {ISA_CAP} or unset it")
    return value.upper() == ISA_CAP and detected_cpu_facts()[1] == "AVX-512"


@functools.cache
def detected_cpu_facts() -> tuple[str, str]:
    """`cpu_facts` as the CPU reports them, before any cap."""
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
    if isa_capped() and "xla_cpu_max_isa" not in flags:
        flags = f"{flags} --xla_cpu_max_isa={ISA_CAP}".strip()
    if vector != "AVX-512" or WIDE_VECTOR_VENDOR not in model or "xla_cpu_prefer_vector_width" in flags:
        return flags
    return f"{flags} {WIDE_VECTOR_FLAG}".strip()


def capped_env() -> dict[str, str]:
    """Environment variables that hold oneDNN, ATen and MKL to AVX2 where ISA_CAP_ENV asks for it (none
    otherwise). Read by those libraries when they load: set before TensorFlow and PyTorch import."""
    return dict(_CAPPED_LIBRARIES) if isa_capped() else {}


def cpu_description() -> str:
    """The CPU model and its widest vector extension, as every recorded figure states it."""
    model, vector = cpu_facts()
    capped = ", capped from AVX-512" if isa_capped() else ""
    return f"{model} ({vector}{capped}, {os.cpu_count()} logical CPUs)"
