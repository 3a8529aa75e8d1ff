"""Stateful training: carried state, resets, chunked TBPTT, stateless scoring, streaming, exact resume."""

from __future__ import annotations

import signal
from pathlib import Path

import keras
import numpy as np
import pytest

from mnist_rnn import runs
from mnist_rnn.config import ModelConfig
from mnist_rnn.config_files import load_config
from mnist_rnn.data import load_dataset
from mnist_rnn.errors import Interrupted
from mnist_rnn.evaluate import evaluate_run
from mnist_rnn.loop import StopRequest
from mnist_rnn.model import build_model, build_twin, recurrent_states, reset_states
from mnist_rnn.trained import TrainedRun, keras_predict
from tests.conftest import train_run, trained_weights

B, T, F = 4, 7, 3


@pytest.fixture
def batches(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two consecutive batches (B, T, F) of one stateful stream."""
    return rng.random((B, T, F), dtype=np.float32), rng.random((B, T, F), dtype=np.float32)


def _with_initial_states(cfg: ModelConfig, stateful: keras.Model) -> keras.Model:
    """A stateless model of the same stack that takes every layer's initial (h, c) as inputs."""
    seq = keras.Input((T, F), batch_size=B)
    state_inputs, x = [], seq
    for i, units in enumerate(cfg.units):
        h, c = keras.Input((units,), batch_size=B), keras.Input((units,), batch_size=B)
        state_inputs += [h, c]
        x = keras.layers.LSTM(units, return_sequences=i < len(cfg.units) - 1)(x, initial_state=[h, c])
    model = keras.Model([seq, *state_inputs], keras.layers.Dense(10, activation="softmax")(x))
    model.set_weights(stateful.get_weights())
    return model


def test_batch_two_continues_from_batch_one_and_a_reset_forgets_it(
    batches: tuple[np.ndarray, np.ndarray],
) -> None:
    x1, x2 = batches
    cfg = ModelConfig(units=(5, 6))
    stateful = build_model(cfg, (T, F), batch_size=B, stateful=True)
    stateful(x1)
    carried = [np.asarray(v) for v in recurrent_states(stateful)]  # [h0, c0, h1, c1] after batch 1
    out2 = np.asarray(stateful(x2))
    explicit = _with_initial_states(cfg, stateful)
    np.testing.assert_allclose(out2, np.asarray(explicit([x2, *carried])), atol=1e-5)

    reset_states(stateful)
    after_reset = np.asarray(stateful(x2))
    zeros = [np.zeros_like(s) for s in carried]
    np.testing.assert_allclose(after_reset, np.asarray(explicit([x2, *zeros])), atol=1e-5)
    assert np.abs(after_reset - out2).max() > 1e-4  # the carried state made a difference


@pytest.mark.parametrize("bidirectional", [False, True], ids=["stacked", "bidirectional"])
def test_reset_zeroes_every_layers_state(bidirectional: bool, batches: tuple[np.ndarray, np.ndarray]) -> None:
    model = build_model(
        ModelConfig(units=(4, 5), bidirectional=bidirectional), (T, F), batch_size=B, stateful=True
    )
    model(batches[0])
    states = recurrent_states(model)
    assert len(states) == (8 if bidirectional else 4)  # (h, c) per layer and direction
    assert all(np.abs(np.asarray(s)).sum() > 0 for s in states)
    reset_states(model)
    assert all(np.abs(np.asarray(s)).sum() == 0 for s in recurrent_states(model))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_chunks_carry_exactly_what_one_pass_over_the_whole_sequence_computes(
    cell: str, rng: np.random.Generator
) -> None:
    cfg = ModelConfig(cell=cell, units=(6, 5))
    whole = build_model(cfg, (28, F))
    chunked = build_model(cfg, (7, F), batch_size=B, stateful=True)
    chunked.set_weights(whole.get_weights())
    x = rng.random((B, 28, F), dtype=np.float32)
    for c in range(4):  # after chunk c, the output equals the whole model's on the prefix so far
        out = np.asarray(chunked(x[:, 7 * c : 7 * (c + 1)]))
        prefix = build_model(cfg, (7 * (c + 1), F))
        prefix.set_weights(whole.get_weights())
        np.testing.assert_allclose(out, np.asarray(prefix(x[:, : 7 * (c + 1)])), atol=1e-5)
    np.testing.assert_allclose(out, np.asarray(whole(x)), atol=1e-5)


STATEFUL = {
    "name": "st",
    "data": {"validation": 256, "limit_train": 640},
    "model": {"units": [16]},
    "train": {"stateful": True, "epochs": 2, "batch_size": 64, "learning_rate": 0.01},
    "run": {"tensorboard": False},
}


def _stateful_run(tmp: Path, *overrides: str, **kwargs: object) -> Path:
    return train_run(STATEFUL, tmp / "run", *overrides, **kwargs).run_dir


def test_eval_of_a_stateful_run_scores_all_10000_test_images_in_any_order(tmp_path: Path) -> None:
    run = _stateful_run(tmp_path, "data.limit_train=600")  # 600 = 9 batches of 64 + 24 dropped
    report = evaluate_run(run, "best", "test")
    assert report["samples"] == 10000 and sum(map(sum, report["confusion_matrix"])) == 10000
    cfg = load_config(run / "config.yaml")
    model, _ = runs.load_checkpoint(run, "best")
    twin = build_twin(cfg.model, model.get_weights(), (28, 28))
    test = load_dataset(cfg.data, cfg.seed).test
    order = np.random.default_rng(1).permutation(len(test))
    forward = keras_predict(twin, test.x, 1000)
    shuffled = np.empty_like(forward)
    shuffled[order] = keras_predict(twin, test.x[order], 1000)
    np.testing.assert_allclose(shuffled, forward, atol=1e-6)
    assert report["accuracy"] == float((forward.argmax(1) == test.y).mean())


def test_streaming_rows_one_at_a_time_ends_on_the_whole_sequence_prediction(tmp_path: Path) -> None:
    run = _stateful_run(tmp_path)
    cfg = load_config(run / "config.yaml")
    test = load_dataset(cfg.data, cfg.seed).test
    model, _ = runs.load_checkpoint(run, "best")
    expected = keras_predict(build_twin(cfg.model, model.get_weights(), (28, 28)), test.x[:3], 3)
    streamer = TrainedRun.open(run).streamer(1)
    for i in range(3):
        steps = streamer.stream(test.x[i])  # resets first
        assert steps.shape == (28, 10)
        np.testing.assert_allclose(steps[-1], expected[i], atol=1e-5)
    by_chunks = TrainedRun.open(run).streamer(7).stream(test.x[0])
    np.testing.assert_allclose(by_chunks[-1], expected[0], atol=1e-5)


def test_chunked_training_resumes_mid_group_exactly(tmp_path: Path) -> None:
    """SIGTERM inside a group of chunks: the checkpoint carries the RNN state, and the resumed run equals an
    uninterrupted one bit for bit."""
    overrides = ("data.chunk_steps=7", "train.chunk_loss=every_chunk", "data.limit_train=512")
    (tmp_path / "a").mkdir()
    reference = _stateful_run(tmp_path / "a", *overrides)
    (tmp_path / "b").mkdir()
    with pytest.raises(Interrupted):  # 8 groups x 4 chunks = 32 steps per epoch: step 43 is mid-group
        _stateful_run(
            tmp_path / "b", *overrides, stop=StopRequest(after_step=43, injected_signum=signal.SIGTERM)
        )
    cut = tmp_path / "b" / "run"
    state = runs.read_checkpoint_state(cut, "last")
    assert (state["epoch"], state["step"]) == (1, 11)  # mid-group: chunk 3 of group 3
    assert state["rnn_state"] and np.abs(np.asarray(state["rnn_state"][0])).sum() > 0
    _stateful_run(tmp_path / "b", *overrides, resume=True)
    for got, want in zip(trained_weights(cut), trained_weights(reference), strict=True):
        np.testing.assert_array_equal(got, want)
