"""glibc keeps the large blocks a step frees once `memory.keep_freed_memory` has run (measured by page
faults in a fresh process, so the rest of the suite keeps glibc's defaults)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = """
import resource, sys
import numpy as np
sys.path.insert(0, {repo!r})
from mnist_rnn.memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = faults()
for _ in range(20):  # what a training step does to its large buffers: allocate, fill, free
    block = np.ones(64 * 2**20 // 8)  # 64 MiB: above glibc's largest default mmap threshold (32 MiB)
    del block
print(applied, faults() - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(repo=str(REPO)), mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_freed_blocks_are_not_faulted_in_again_on_every_step() -> None:
    applied, tuned = _faults("tuned")
    _, default = _faults("default")
    assert applied
    # glibc's defaults map each block anew and fault all of it in, 20 times; tuned, the first block's pages
    # are faulted once and reused (measured 10,880 vs 1,041 faults with NumPy's transparent huge pages).
    assert tuned * 5 < default, (tuned, default)
