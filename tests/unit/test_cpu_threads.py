"""`train.cpu_threads`: applied before TensorFlow starts its runtime (in a fresh process, so the rest of
the suite keeps TensorFlow's default), and refused in one line where it can no longer take effect."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mnist_rnn.config import Config, DataConfig, ModelConfig, TrainConfig
from mnist_rnn.errors import ConfigError
from mnist_rnn.execution import plan_execution, planned_cpu_threads, set_cpu_threads
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


def test_the_plans_own_preference_gives_way_once_tensorflow_runs() -> None:
    """`train.cpu_threads` left out, the plan's choice is a preference: a process whose runtime already
    runs (a test, a notebook) trains with the count in effect rather than failing."""
    import tensorflow as tf

    tf.constant(1.0) + 1.0
    current = tf.config.threading.get_intra_op_parallelism_threads()
    assert set_cpu_threads(current + 3, required=False) == current


@pytest.mark.parametrize(
    ("model", "train", "cores", "threads"),
    [
        (ModelConfig(), TrainConfig(), 2, 1),  # the default model: fused LSTM in 2 shards
        (ModelConfig(units=(128,)), TrainConfig(), 2, 1),  # one layer shards too
        (ModelConfig(), TrainConfig(cpu_threads=2), 2, 2),  # the config's own count wins
        (ModelConfig(cell="gru"), TrainConfig(), 2, None),  # Keras's GRU in shards: slower
        (ModelConfig(), TrainConfig(batch_shards=1), 2, None),  # one XLA call: its ops spread
        (ModelConfig(), TrainConfig(), 1, None),  # one core: nothing to shard
        (ModelConfig(lstm_kernel="keras"), TrainConfig(), 2, None),  # Keras's LSTM in shards
    ],
)
def test_one_thread_per_op_where_the_fused_lstm_trains_one_shard_per_core(
    model: ModelConfig, train: TrainConfig, cores: int, threads: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    cfg = Config(model=model, train=train.model_copy(update={"epochs": 50}))
    assert planned_cpu_threads(cfg, plan_execution(cfg, "/CPU:0")) == threads


def test_the_fused_lstm_in_shards_on_long_sequences_keeps_the_default_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its loop over chunks runs on the intra-op pool: one thread there would run the shards one by one."""
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    cfg = Config(data=DataConfig(layout="pixels"), train=TrainConfig(epochs=50))
    execution = plan_execution(cfg, "/CPU:0")
    assert (execution.fused, execution.shards) == (True, 2)
    assert planned_cpu_threads(cfg, execution) is None
