"""mnist_rnn.cpu: 512-bit XLA vectors where they were measured to pay (AVX-512 AMD), the user's own
XLA_FLAGS kept, and the environment `import_tensorflow` hands to TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

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


@pytest.fixture
def cpu_seen_as(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make the CPU report (model, vector) as detected."""

    def see(model: str, vector: str) -> None:
        monkeypatch.setattr(cpu, "detected_cpu_facts", lambda: (model, vector))

    return see


def test_avx2_cap_plans_and_compiles_as_avx2(monkeypatch: pytest.MonkeyPatch, cpu_seen_as: Any) -> None:
    cpu_seen_as("AMD EPYC 9R14", "AVX-512")
    monkeypatch.setenv(cpu.ISA_CAP_ENV, "avx2")
    assert cpu.cpu_facts()[1] == "AVX2"
    assert cpu.planned_xla_flags("") == "--xla_cpu_max_isa=AVX2"  # and no 512-bit width
    assert cpu.planned_xla_flags("--xla_cpu_max_isa=SSE4_2") == "--xla_cpu_max_isa=SSE4_2"  # the user's
    assert cpu.capped_env()["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert cpu.capped_env()["ATEN_CPU_CAPABILITY"] == "avx2"
    assert "AVX2, capped from AVX-512" in cpu.cpu_description()  # every figure says so


def test_without_the_cap_nothing_changes(monkeypatch: pytest.MonkeyPatch, cpu_seen_as: Any) -> None:
    cpu_seen_as("AMD EPYC 9R14", "AVX-512")
    monkeypatch.delenv(cpu.ISA_CAP_ENV, raising=False)
    assert (cpu.cpu_facts()[1], cpu.capped_env(), cpu.planned_xla_flags("")) == ("AVX-512", {}, WIDE)
    assert "capped" not in cpu.cpu_description()


def test_the_cap_is_a_no_op_on_an_avx2_cpu(monkeypatch: pytest.MonkeyPatch, cpu_seen_as: Any) -> None:
    cpu_seen_as("AMD EPYC 7R13", "AVX2")
    monkeypatch.setenv(cpu.ISA_CAP_ENV, "AVX2")
    assert (cpu.cpu_facts()[1], cpu.capped_env(), cpu.planned_xla_flags("")) == ("AVX2", {}, "")
    assert "capped" not in cpu.cpu_description()


def test_an_unknown_cap_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the CLI, as a developer mistyping it would meet it: exit code 2, the variable named, no
    traceback, before TensorFlow loads."""
    env = os.environ | {cpu.ISA_CAP_ENV: "avx-2"}
    done = subprocess.run(
        [sys.executable, "-m", "mnist_rnn", "eval", "no-such-run"],
        capture_output=True, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"{cpu.ISA_CAP_ENV}='avx-2' is not known" in done.stderr
    assert "Traceback" not in done.stderr
