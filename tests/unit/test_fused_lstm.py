"""The fused LSTM computes Keras's LSTM: same outputs and gradients from the same weights, and it
round-trips through a saved model. `plan_execution` picks it only where it can run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_rnn.config import Config, DataConfig, Jit, LstmKernel, ModelConfig, TrainConfig
from mnist_rnn.execution import plan_execution


def _outputs_and_gradients(layer, x, numpy=True):
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        # A loss that weighs every output differently, so a gradient mixed up between units shows.
        weights = tf.reshape(tf.sin(tf.range(tf.size(y), dtype=tf.float32)), tf.shape(y))
        loss = tf.reduce_sum(y * weights)
    gradients = tape.gradient(loss, [x, *layer.trainable_weights])
    if not numpy:  # inside a tf.function
        return y, gradients
    return np.asarray(y), [np.asarray(g) for g in gradients]


@pytest.mark.parametrize("return_sequences", [False, True])
# 150 and 131 steps: longer than FUSED_MAX_STEPS, the forward loop over chunks of 15 and of 1 step
@pytest.mark.parametrize("shape", [(5, 28, 28), (3, 7, 1), (2, 150, 3), (2, 131, 1)])
def test_fused_lstm_matches_keras_lstm_outputs_and_gradients(return_sequences, shape) -> None:
    import keras

    from mnist_rnn.fused_lstm import FusedLSTM

    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    reference = keras.layers.LSTM(16, return_sequences=return_sequences)
    fused = FusedLSTM(16, return_sequences=return_sequences)
    reference.build(shape)
    fused.build(shape)
    assert [w.shape for w in fused.get_weights()] == [w.shape for w in reference.get_weights()]
    # Non-default weights (a trained bias, say) so that every gate and gradient path is exercised.
    rng = np.random.default_rng(1)
    fused.set_weights([w + rng.normal(0, 0.3, w.shape).astype(np.float32) for w in reference.get_weights()])
    reference.set_weights(fused.get_weights())
    y_ref, g_ref = _outputs_and_gradients(reference, x)
    y_fused, g_fused = _outputs_and_gradients(fused, x)
    np.testing.assert_allclose(y_fused, y_ref, atol=1e-5)
    for name, a, b in zip(["input", "kernel", "recurrent_kernel", "bias"], g_fused, g_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_fused_lstm_gradients_are_the_same_in_graphs_and_under_xla(return_sequences, jit_compile) -> None:
    """The backward pass pins one operand with XLA's optimization barrier under XLA only: in a plain graph
    and under XLA the outputs and gradients are the eager ones."""
    import tensorflow as tf

    from mnist_rnn.fused_lstm import FusedLSTM

    shape = (4, 28, 28)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    fused = FusedLSTM(16, return_sequences=return_sequences)
    fused.build(shape)
    compiled = tf.function(lambda x: _outputs_and_gradients(fused, x, numpy=False), jit_compile=jit_compile)
    y_eager, g_eager = _outputs_and_gradients(fused, x)
    y, gradients = compiled(tf.constant(x))
    np.testing.assert_allclose(np.asarray(y), y_eager, atol=1e-6)
    for name, a, b in zip(["input", "kernel", "recurrent_kernel", "bias"], gradients, g_eager, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_long_sequences_score_without_the_backward_tape_to_the_same_bits(return_sequences) -> None:
    """Scoring (`training=False`) runs the loop over chunks without keeping the backward pass's factors;
    it computes the same steps as the trained forward pass, so the same numbers."""
    from mnist_rnn.fused_lstm import FusedLSTM

    x = np.random.default_rng(0).random((3, 144, 2), dtype=np.float32)
    layer = FusedLSTM(8, return_sequences=return_sequences)
    layer.build(x.shape)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), np.asarray(layer(x, training=True)))


def test_the_unrolled_length_is_the_one_execution_plans_with() -> None:
    from mnist_rnn.execution import FUSED_MAX_STEPS
    from mnist_rnn.fused_lstm import UNROLL_MAX_STEPS

    assert UNROLL_MAX_STEPS == FUSED_MAX_STEPS


def test_fused_initial_weights_follow_keras_initializers() -> None:
    from mnist_rnn.fused_lstm import FusedLSTM

    layer = FusedLSTM(8)
    layer.build((None, 28, 28))
    kernel, recurrent, bias = layer.get_weights()
    np.testing.assert_array_equal(bias, np.r_[np.zeros(8), np.ones(8), np.zeros(16)])  # unit forget bias
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(8), atol=1e-5)  # orthogonal rows
    assert np.abs(kernel).max() <= np.sqrt(6 / (28 + 32)) + 1e-6  # glorot uniform limit


def test_fused_model_saves_and_loads_with_its_weights(tmp_path: Path) -> None:
    import keras

    import mnist_rnn.fused_lstm  # noqa: F401  (registers the layer, as runs.load_checkpoint does)
    from mnist_rnn.model import build_model, uses_fused_lstm

    model = build_model(ModelConfig(units=(8, 8), head="mean"), (28, 28), fused=True)
    assert uses_fused_lstm(model)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).random((4, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    # ... and the weights move into the stock-layer model that export and streaming build.
    twin = build_model(ModelConfig(units=(8, 8), head="mean"), (28, 28))
    twin.set_weights(loaded.get_weights())
    np.testing.assert_allclose(np.asarray(twin(x)), np.asarray(model(x)), atol=1e-5)


@pytest.mark.parametrize(
    ("cfg", "device", "fused", "xla"),
    [
        (Config(), "/CPU:0", True, True),  # default: 2x LSTM rows on a CPU
        (Config(), "/GPU:0", False, False),  # GPU: Keras's LSTM (cuDNN)
        (Config(model=ModelConfig(cell="gru")), "/CPU:0", False, True),  # a long GRU run: XLA alone
        (Config(model=ModelConfig(cell="gru"), train=TrainConfig(epochs=1)), "/CPU:0", False, False),
        (Config(model=ModelConfig(cell="gru")), "/GPU:0", False, False),
        # long sequences: the fused LSTM's loop over chunks
        (Config(data=DataConfig(layout="pixels"), model=ModelConfig(units=(128,))), "/CPU:0", True, True),
        (Config(data=DataConfig(layout="pixels")), "/CPU:0", True, True),
        # ... Keras's layers: XLA alone for one layer, not for two (4x slower there)
        (
            Config(data=DataConfig(layout="pixels"), model=ModelConfig(units=(128,), cell="gru")),
            "/CPU:0",
            False,
            True,
        ),
        (Config(data=DataConfig(layout="pixels"), model=ModelConfig(cell="gru")), "/CPU:0", False, False),
        (Config(model=ModelConfig(bidirectional=True)), "/CPU:0", False, False),
        (Config(model=ModelConfig(recurrent_dropout=0.1)), "/CPU:0", False, False),
        (Config(train=TrainConfig(stateful=True)), "/CPU:0", False, False),
        (Config(train=TrainConfig(jit_compile=Jit.off)), "/CPU:0", False, False),
        (Config(model=ModelConfig(lstm_kernel=LstmKernel.keras)), "/CPU:0", False, False),
        # A short run (smoke: 4,000 images x 3 epochs) does not repay XLA's compile ...
        (Config(data=DataConfig(limit_train=4000), train=TrainConfig(epochs=3)), "/CPU:0", False, False),
        # ... unless asked for.
        (
            Config(data=DataConfig(limit_train=4000), model=ModelConfig(lstm_kernel=LstmKernel.fused)),
            "/CPU:0",
            True,
            True,
        ),
        (Config(model=ModelConfig(lstm_kernel=LstmKernel.fused)), "/GPU:0", True, True),
        (
            Config(model=ModelConfig(lstm_kernel=LstmKernel.fused), train=TrainConfig(jit_compile=Jit.off)),
            "/CPU:0",
            True,
            False,
        ),
    ],
)
def test_plan_execution_picks_the_fused_kernel_only_where_it_runs(cfg, device, fused, xla) -> None:
    execution = plan_execution(cfg, device)
    assert (execution.fused, execution.xla) == (fused, xla)
