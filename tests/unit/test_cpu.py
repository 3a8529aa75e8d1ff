"""mnist_rnn.cpu: 512-bit XLA vectors where they were measured to pay (AVX-512 AMD), the user's own
XLA_FLAGS kept, and the environment `import_tensorflow` hands to TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mnist_rnn import cpu
from tests.conftest import REPO

WIDE = cpu.WIDE_VECTOR_FLAG
NARROW = "--xla_cpu_prefer_vector_width=256"


@pytest.mark.parametrize(
    ("model", "vector", "flags", "expected"),
    [
        ("AMD EPYC 9R14", "AVX-512", "", WIDE),
        ("AMD EPYC 9R14", "AVX-512", "--xla_cpu_use_xnnpack=true", f"--xla_cpu_use_xnnpack=true {WIDE}"),
        ("AMD EPYC 9R14", "AVX-512", NARROW, NARROW),  # the user's width stays
        ("AMD EPYC 7R13", "AVX2", "", ""),  # not measured there: XLA's default
        ("Intel(R) Xeon(R) Platinum 8375C", "AVX-512", "", ""),  # Intel's 512-bit clock: not measured
    ],
)
def test_planned_xla_flags(
    monkeypatch: pytest.MonkeyPatch, model: str, vector: str, flags: str, expected: str
) -> None:
    monkeypatch.setattr(cpu, "cpu_facts", lambda: (model, vector))
    assert cpu.planned_xla_flags(flags) == expected


PROBE = """
import os, sys
sys.path.insert(0, {repo!r})
from mnist_rnn.tf_import import import_tensorflow
from mnist_rnn.cpu import planned_xla_flags
import_tensorflow()
print(os.environ["XLA_FLAGS"] == planned_xla_flags({user!r}))
"""


@pytest.mark.parametrize("user", ["", NARROW])
def test_import_tensorflow_hands_the_planned_flags_to_xla(user: str) -> None:
    """In a fresh process, as `mnist-rnn` starts: the flags are in the environment before TensorFlow loads
    (XLA reads them once), and a width the user chose stays theirs."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | ({"XLA_FLAGS": user} if user else {})
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(repo=str(REPO), user=user)],
        capture_output=True, text=True, check=True, env=env,
    ).stdout  # fmt: skip
    assert out.strip() == "True"
