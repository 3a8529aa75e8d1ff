"""The sharded training step (`sharded_step.ShardedModel`): the same step as the whole batch's, its dropout
draws, a checkpoint that keeps it, and where the plan uses it."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from mnist_rnn.config import Config, DataConfig, ModelConfig, Strategy, TrainConfig
from mnist_rnn.config_files import ConfigError, load_config
from mnist_rnn.execution import plan_execution, running_execution, seed_everything
from mnist_rnn.loop import compile_model
from mnist_rnn.model import build_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SHAPE = (6, 10)


def _pair(
    shards: int, dropout: float = 0.0, shape: tuple[int, int] = SHAPE, units: tuple[int, ...] = (16,)
) -> tuple[keras.Model, keras.Model]:
    """A sharded model and a plain one with the same weights, both compiled as training compiles them."""
    # As training seeds an XLA run on a CPU: op determinism off, or Keras turns the plain model's XLA off.
    seed_everything(3, deterministic=True, jit_compile=True, device="/CPU:0")
    cfg = ModelConfig(units=units, dropout=dropout)
    sharded = build_model(cfg, shape, fused=True, shards=shards)  # short sequences: quick XLA compiles
    plain = build_model(cfg, shape, fused=True)
    plain.set_weights(sharded.get_weights())
    compile_model(sharded, TrainConfig(), xla=True)
    compile_model(plain, TrainConfig(), xla=True)
    return sharded, plain


@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_step_trains_as_the_whole_batch_does(shards: int) -> None:
    sharded, plain = _pair(shards)
    assert not sharded.jit_compile and plain.jit_compile  # the shards are compiled, not the outer step
    initial = sharded.get_weights()
    rng = np.random.default_rng(0)
    x, y = rng.random((240, *SHAPE), dtype=np.float32), rng.integers(0, 10, 240)
    histories = [
        m.fit(x, y, batch_size=120, epochs=3, shuffle=False, verbose=0).history for m in (sharded, plain)
    ]
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-5)
    assert histories[0]["accuracy"] == histories[1]["accuracy"]
    for a, b in zip(sharded.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert max(float(np.abs(a - w).max()) for a, w in zip(sharded.get_weights(), initial, strict=True)) > 1e-3


def test_sharded_step_trains_long_sequences_as_the_whole_batch_does() -> None:
    """Sequences too long to unroll (the fused LSTM's loop over chunks, one feature per step as pixels
    have), two layers, and a last batch of 30 that the shards split into 15 each (their batch size unknown
    when traced)."""
    sharded, plain = _pair(2, shape=(132, 1), units=(8, 8))
    rng = np.random.default_rng(1)
    x, y = rng.random((150, 132, 1), dtype=np.float32), rng.integers(0, 10, 150)
    histories = [
        m.fit(x, y, batch_size=60, epochs=2, shuffle=False, verbose=0).history for m in (sharded, plain)
    ]
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-5)
    for a, b in zip(sharded.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_batch_smaller_than_the_shard_count_still_trains() -> None:
    sharded, plain = _pair(2)
    x, y = np.ones((1, *SHAPE), np.float32), np.array([3])
    loss = sharded.fit(x, y, batch_size=1, verbose=0).history["loss"][0]
    assert loss == pytest.approx(plain.fit(x, y, batch_size=1, verbose=0).history["loss"][0], rel=1e-5)


def test_each_shard_draws_its_own_dropout_masks_and_the_seeds_advance_once_per_step() -> None:
    sharded, _ = _pair(2, dropout=0.5)
    before = [v.numpy().copy() for v in sharded.non_trainable_variables]
    assert len(before) == 1  # the Dropout layer's seed generator
    step = sharded._compiled_shard_step()
    seen: list[list[np.ndarray]] = []

    def recording(trainable, others, *rest):  # type: ignore[no-untyped-def]
        seen.append([np.asarray(o) for o in others])
        return step(trainable, others, *rest)

    sharded._shard_step = recording
    sharded.run_eagerly = True  # the outer step only, so the recording sees values; the shards stay XLA
    x = np.ones((64, *SHAPE), np.float32)
    sharded.fit(x, np.zeros(64, int), batch_size=64, verbose=0)
    assert len(seen) == 2  # one call per shard
    for first, second in zip(*seen, strict=True):
        assert not np.array_equal(first, second)
    after = [v.numpy() for v in sharded.non_trainable_variables]
    for b, a in zip(before, after, strict=True):
        assert a[0] == b[0] and a[1] == b[1] + 1


def test_a_checkpoint_keeps_the_shards_and_the_run_says_so(tmp_path: Path) -> None:
    sharded, _ = _pair(3)
    sharded.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded).__name__ == "ShardedModel" and loaded.shards == 3 and not loaded.jit_compile
    execution = running_execution(loaded)
    assert (execution.shards, execution.xla, execution.fused) == (3, True, True)
    assert "batch in 3 concurrent shards" in execution.describe()


@pytest.mark.parametrize(
    ("train", "device", "cores", "shards"),
    [
        (TrainConfig(jit_compile="on"), "/CPU:0", 2, 2),
        (TrainConfig(jit_compile="on"), "/CPU:0", 1, 1),
        (TrainConfig(jit_compile="on", cpu_threads=1), "/CPU:0", 2, 1),  # cpu_threads bounds the cores
        (TrainConfig(jit_compile="on", batch_size=32), "/CPU:0", 2, 1),  # shards of at least 32
        (TrainConfig(jit_compile="on"), "/GPU:0", 2, 1),
        (TrainConfig(jit_compile="off"), "/CPU:0", 2, 1),
        (TrainConfig(jit_compile="off", batch_shards=1), "/CPU:0", 2, 1),
        (TrainConfig(jit_compile="auto", batch_shards=4), "/CPU:0", 2, 4),  # as asked: XLA then on
        (TrainConfig(jit_compile="on", stateful=True), "/CPU:0", 2, 1),
        (TrainConfig(strategy=Strategy.mirrored), "/CPU:0", 2, 1),
    ],
)
def test_plan_gives_one_shard_per_core_to_xla_runs_on_a_cpu(
    train, device, cores, shards, monkeypatch
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    execution = plan_execution(Config(train=train), device)  # the default model: LSTM 2x128 on rows
    assert execution.shards == shards
    assert execution.xla or shards == 1


@pytest.mark.parametrize(
    ("model", "layout", "shards"),
    [
        (ModelConfig(units=(128,)), "rows", 2),  # one layer pays too (execution.py)
        (ModelConfig(units=(128,)), "pixels", 2),  # long sequences: the fused LSTM's loop
        (ModelConfig(cell="gru", units=(128,)), "pixels", 1),  # ... not Keras's layers (XLA, no shards)
        (ModelConfig(cell="gru", units=(64, 64)), "rows", 2),
        (ModelConfig(units=(64, 64, 64)), "columns", 2),
        (ModelConfig(units=(128, 128)), "pixels", 2),
        (ModelConfig(cell="gru", units=(128, 128)), "pixels", 1),  # XLA off: nothing to shard
        (ModelConfig(units=(128,), lstm_kernel="keras"), "pixels", 1),
    ],
)
@pytest.mark.parametrize("vector", ["AVX2", "AVX-512"])  # the same on either kind, as measured
def test_auto_shards_xla_runs_on_short_sequences_and_the_fused_lstm_on_long(
    model, layout, shards, vector, monkeypatch
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr("mnist_rnn.cpu.cpu_facts", lambda: ("AMD EPYC", vector))
    cfg = Config(
        data=DataConfig(layout=layout), model=model, train=TrainConfig(jit_compile="auto", epochs=50)
    )
    assert plan_execution(cfg, "/CPU:0").shards == shards


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.batch_shards=2", "train.stateful=true"], "train.stateful is true"),
        (["train.batch_shards=2", "train.jit_compile=off"], "train.jit_compile is off"),
        (["train.batch_shards=2", "train.strategy=mirrored"], "train.strategy is mirrored"),
        (["train.batch_shards=200"], "must be at most train.batch_size=128"),
    ],
)
def test_shards_that_cannot_run_are_refused_naming_the_key(tmp_path: Path, overrides, message) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError, match="train.batch_shards") as caught:
        load_config(path, overrides)
    assert message in str(caught.value)
