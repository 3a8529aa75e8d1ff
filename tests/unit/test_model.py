"""Model builder: shapes, stacking, wrappers, heads, and the cuDNN notes."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_rnn.config import ModelConfig
from mnist_rnn.execution import cudnn_blockers
from mnist_rnn.model import build_model, fixed_rows_calls


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"cell": "gru", "units": (8, 8)},
        {"cell": "simple_rnn", "units": (8,)},
        {"bidirectional": True, "units": (8, 4)},
        {"projection": 16, "units": (8,)},
        {"head": "mean", "units": (8,)},
        {"dropout": 0.3, "units": (8, 8)},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default",
)
def test_output_is_a_distribution_over_ten_classes(overrides: dict) -> None:
    model = build_model(ModelConfig(**overrides), (28, 28))
    probs = np.asarray(model(np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)))
    assert probs.shape == (3, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def _recurrent(model):
    return [
        layer
        for layer in model.layers
        if hasattr(layer, "return_sequences") or hasattr(layer, "forward_layer")
    ]


def test_stacked_layers_return_sequences_except_the_last() -> None:
    model = build_model(ModelConfig(units=(8, 8, 4)), (28, 28))
    assert [layer.return_sequences for layer in _recurrent(model)] == [True, True, False]
    assert [layer.units for layer in _recurrent(model)] == [8, 8, 4]


def test_mean_head_keeps_every_step_of_the_last_layer() -> None:
    model = build_model(ModelConfig(units=(8,), head="mean"), (28, 28))
    assert _recurrent(model)[0].return_sequences is True
    assert any(layer.name == "mean_over_time" for layer in model.layers)


def test_bidirectional_doubles_the_features() -> None:
    model = build_model(ModelConfig(units=(8,), bidirectional=True), (28, 28))
    assert model.get_layer("probabilities").input.shape[-1] == 16


def test_recurrent_layers_keep_the_cudnn_compatible_defaults() -> None:
    model = build_model(ModelConfig(units=(8,), dropout=0.2), (28, 28))
    layer = _recurrent(model)[0]
    assert layer.dropout == 0 and layer.recurrent_dropout == 0 and not layer.unroll  # dropout is a layer
    assert cudnn_blockers(ModelConfig(dropout=0.2)) == []


def test_cudnn_blockers_name_the_keys() -> None:
    assert "model.recurrent_dropout" in cudnn_blockers(ModelConfig(recurrent_dropout=0.1))[0]
    assert "simple_rnn" in cudnn_blockers(ModelConfig(cell="simple_rnn"))[0]


def test_fixed_rows_calls_give_each_row_the_bits_it_gets_alone() -> None:
    model = build_model(ModelConfig(units=(16,)), (28, 28))
    x = np.random.default_rng(0).random((11, 28, 28), dtype=np.float32)
    calls = fixed_rows_calls(model, 4)  # 11 rows: three calls of 4, the last padded with zeros
    together = calls(x)
    assert together.shape == (11, 10)
    alone = np.concatenate([calls(x[i : i + 1]) for i in range(11)])
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(calls(x[::-1])[::-1], alone)  # other neighbours, other positions
    np.testing.assert_allclose(together, model.predict_on_batch(x), atol=1e-6)  # Keras's own, to rounding
    assert calls(x[:0]).shape == (0, 10)
