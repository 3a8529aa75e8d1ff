"""The JANET cell against a hand-written reference, its gradients, serialisation, and chrono biases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_rnn.config import Cell, ModelConfig
from mnist_rnn.model import build_model, build_twin, chrono_bias

UNITS, FEATURES, STEPS, BATCH = 6, 3, 9, 4


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def janet_reference(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The paper's equations, one step at a time, in float64: every step's c (= h)."""
    u = recurrent.shape[0]
    w_f, w_c, u_f, u_c, b_f, b_c = (
        kernel[:, :u],
        kernel[:, u:],
        recurrent[:, :u],
        recurrent[:, u:],
        bias[:u],
        bias[u:],
    )
    c = np.zeros((x.shape[0], u))
    outputs = []
    for t in range(x.shape[1]):
        s = x[:, t] @ w_f + c @ u_f + b_f
        candidate = np.tanh(x[:, t] @ w_c + c @ u_c + b_c)
        c = _sigmoid(s) * c + (1.0 - _sigmoid(s - 1.0)) * candidate
        outputs.append(c)
    return np.stack(outputs, axis=1)


def _janet_layer(dtype: str = "float32"):  # noqa: ANN202
    import keras

    from mnist_rnn.layers import JANETCell

    layer = keras.layers.RNN(JANETCell(UNITS, dtype=dtype), return_sequences=True, dtype=dtype)
    layer.build((None, STEPS, FEATURES))
    return layer


def _random_weights(layer, rng: np.random.Generator) -> None:  # noqa: ANN001
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in layer.get_weights()])


def test_janet_matches_the_papers_equations_step_by_step(rng: np.random.Generator) -> None:
    layer = _janet_layer()
    _random_weights(layer, rng)
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype(np.float32)
    got = np.asarray(layer(x))
    kernel, recurrent, bias = (w.astype(np.float64) for w in layer.get_weights())
    expected = janet_reference(x.astype(np.float64), kernel, recurrent, bias)
    assert got.shape == expected.shape == (BATCH, STEPS, UNITS)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_janet_gradients_match_finite_differences(rng: np.random.Generator) -> None:
    import tensorflow as tf

    layer = _janet_layer("float64")
    _random_weights(layer, rng)
    x = tf.constant(rng.normal(size=(BATCH, STEPS, FEATURES)))
    probe = tf.constant(rng.normal(size=(BATCH, STEPS, UNITS)))  # a loss that weighs every output

    def loss() -> tf.Tensor:
        return tf.reduce_sum(layer(x) * probe)

    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, layer.trainable_weights)
    eps = 1e-6
    for variable, grad in zip(layer.trainable_weights, grads, strict=True):
        flat = variable.numpy().reshape(-1)
        for i in rng.choice(flat.size, size=5, replace=False):
            step = np.zeros_like(flat)
            step[i] = eps
            variable.assign((flat + step).reshape(variable.shape))
            up = float(loss())
            variable.assign((flat - step).reshape(variable.shape))
            down = float(loss())
            variable.assign(flat.reshape(variable.shape))
            assert grad.numpy().reshape(-1)[i] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-7)


def test_a_janet_model_saves_and_loads_with_the_registered_layers(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    import keras

    cfg = ModelConfig(cell="janet", units=(8, 8), bidirectional=True)
    model = build_model(cfg, (STEPS, FEATURES))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")  # mnist_rnn.layers is imported: registered
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    assert {type(w).__name__ for w in loaded.layers} >= {"Bidirectional"}


def test_a_stateful_janet_carries_its_state_across_calls(rng: np.random.Generator) -> None:
    cfg = ModelConfig(cell="janet", units=(8,))
    whole = build_model(cfg, (STEPS, FEATURES))
    x = rng.normal(size=(1, STEPS, FEATURES)).astype(np.float32)
    halves = build_twin(cfg, whole.get_weights(), (3, FEATURES), batch_size=1, stateful=True)
    for i in range(0, STEPS, 3):
        last = np.asarray(halves(x[:, i : i + 3]))
    np.testing.assert_allclose(last, np.asarray(whole(x)), atol=1e-6)


@pytest.mark.parametrize(("cell", "gates"), [(Cell.lstm, 4), (Cell.janet, 2)])
@pytest.mark.parametrize("t_max", [28, 784])
def test_chrono_biases_lie_in_log_1_to_t_max(cell: Cell, gates: int, t_max: int) -> None:
    units = 500
    bias = chrono_bias(cell, gates * units, t_max, np.random.default_rng(0))
    forget = bias[units : 2 * units] if cell is Cell.lstm else bias[:units]
    assert forget.min() >= 0.0 and forget.max() <= np.log(t_max - 1) + 1e-6
    assert forget.max() > 0.9 * np.log(t_max - 1)  # spread over the whole range, not bunched
    if cell is Cell.lstm:  # [i, f, c, o]: b_i = -b_f, candidate and output 0
        np.testing.assert_array_equal(bias[:units], -forget)
        assert not bias[2 * units :].any()
    else:  # [f, c]: the candidate's bias 0
        assert not bias[units:].any()


@pytest.mark.parametrize("fused", [False, True])
def test_build_model_applies_chrono_to_every_layer_and_unit_stays_keras(fused: bool) -> None:
    chrono = build_model(ModelConfig(units=(8, 8), forget_bias="chrono"), (28, 28), fused=fused)
    unit = build_model(ModelConfig(units=(8, 8)), (28, 28), fused=fused)
    for layer in (1, 2):
        bias_chrono = chrono.layers[layer].get_weights()[2]
        bias_unit = unit.layers[layer].get_weights()[2]
        np.testing.assert_array_equal(bias_chrono[:8], -bias_chrono[8:16])
        assert bias_chrono[8:16].max() <= np.log(27) and len(set(bias_chrono[8:16])) == 8
        np.testing.assert_array_equal(bias_unit, np.r_[np.zeros(8), np.ones(8), np.zeros(16)])


def test_chrono_uses_the_whole_sequence_length_when_trained_by_chunks() -> None:
    model = build_model(
        ModelConfig(cell="janet", units=(300,)), (28, 1), batch_size=4, stateful=True, sequence_steps=784
    )
    forget = model.layers[1].get_weights()[2][:300]
    assert forget.max() > np.log(27)  # T_max is 784, not the 28-step chunk
