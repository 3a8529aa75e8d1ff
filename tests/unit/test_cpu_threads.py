"""`train.cpu_threads`: applied before TensorFlow starts its runtime (in a fresh process, so the rest of
the suite keeps TensorFlow's default), and refused in one line where it can no longer take effect."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mnist_rnn.errors import ConfigError
from mnist_rnn.execution import set_cpu_threads
from tests.conftest import REPO

PROBE = """
import sys
sys.path.insert(0, {repo!r})
from mnist_rnn.tf_import import import_tensorflow
tf = import_tensorflow()
from mnist_rnn.execution import set_cpu_threads
print(set_cpu_threads(1), end=" ")
tf.constant(1.0) + 1.0  # starts the runtime with the pool as configured
print(tf.config.threading.get_intra_op_parallelism_threads())
"""


def test_cpu_threads_reach_tensorflow_before_it_starts() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(repo=str(REPO))], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["1", "1"]


def test_cpu_threads_after_tensorflow_started_is_a_one_line_config_error() -> None:
    import tensorflow as tf

    tf.constant(1.0) + 1.0  # the runtime is up in this process
    current = tf.config.threading.get_intra_op_parallelism_threads()
    assert set_cpu_threads(None) == current  # left out: nothing to apply
    with pytest.raises(ConfigError, match=r"train.cpu_threads=\d+ cannot take effect.*new process"):
        set_cpu_threads(current + 3)
