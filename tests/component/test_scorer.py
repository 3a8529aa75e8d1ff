"""evaluate.Scorer: validation, the final test and `eval` score through one XLA-compiled stateless twin of
Keras's layers on a CPU. It must give Keras's own predictions, whatever kernel trained the model, for any
number of images (a short last batch is its own shape), and follow the model's weights from call to call."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_rnn.config import Config, Strategy
from mnist_rnn.evaluate import Scorer, scoring_pieces
from mnist_rnn.execution import plan_scoring, scoring_fused, scoring_shards
from mnist_rnn.model import build_model, uses_fused_lstm
from mnist_rnn.trained import inference_model, keras_predict


def _config(**model: object) -> Config:
    return Config.model_validate({"model": {"units": [16, 8], **model}, "train": {"eval_batch_size": 64}})


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 28, 28), dtype=np.float32)


@pytest.mark.parametrize(
    "model, fused, n",
    [
        ({"cell": "lstm"}, True, 150),  # fused kernel, two full batches and a short one
        ({"cell": "lstm"}, False, 64),  # exactly one batch
        ({"cell": "gru"}, False, 10),  # fewer images than a batch: no padding, its own shape
        ({"cell": "janet"}, False, 130),
    ],
)
@pytest.mark.parametrize("shards", [1, 2])
def test_scorer_gives_keras_predictions(model: dict, fused: bool, n: int, shards: int) -> None:
    cfg = _config(**model)
    trained = build_model(cfg.model, (28, 28), fused=fused)
    assert uses_fused_lstm(trained) == fused
    x = _images(n)
    expected = keras_predict(inference_model(cfg, trained), x, 64)
    got = Scorer(cfg, xla=True, shards=shards)(trained, x)  # shards: batches of 64 in two XLA calls
    assert got.shape == (n, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("units", [[16], [16, 8]])
def test_scorer_reads_pixels_through_the_fused_loop_as_keras_does(units: list[int]) -> None:
    cfg = Config.model_validate(
        {"data": {"layout": "pixels"}, "model": {"units": units}, "train": {"eval_batch_size": 64}}
    )
    assert scoring_fused(cfg) and not scoring_fused(_config())  # pixels, not rows
    trained = build_model(cfg.model, (784, 1))
    x = np.random.default_rng(0).random((70, 784, 1), dtype=np.float32)
    expected = keras_predict(inference_model(cfg, trained), x, 64)
    for fused in (True, False):
        got = Scorer(cfg, xla=True, shards=2, fused=fused)(trained, x)
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"fused={fused}")


@pytest.mark.parametrize(
    ("n", "batch", "shards", "pieces"),
    [
        (150, 64, 1, [(0, 64), (64, 128), (128, 150)]),  # batches, a short last one its own shape
        (150, 64, 2, [(0, 64), (64, 128), (128, 150)]),  # as many whole batches as cores: whole batches
        (100, 64, 2, [(0, 32), (32, 64), (64, 100)]),  # one whole batch: split; 36 < 2 x MIN_SHARD is not
        (256, 1000, 2, [(0, 128), (128, 256)]),  # the bench's pixel slice: one short batch, one per core
        (65, 1000, 3, [(0, 65)]),  # too few images to give three cores a shard each
        (10, 64, 2, [(0, 10)]),
    ],
)
def test_scoring_pieces(n: int, batch: int, shards: int, pieces: list[tuple[int, int]]) -> None:
    assert scoring_pieces(n, batch, shards) == pieces


def test_scoring_whole_batches_side_by_side_equals_one_at_a_time_to_the_bit() -> None:
    """The calls of one graph run side by side only where they are whole batches: the same numbers as one
    call per batch in turn, so a run's figures do not depend on the cores it scored on."""
    cfg = _config(cell="gru")
    model, x = build_model(cfg.model, (28, 28)), _images(150)
    np.testing.assert_array_equal(Scorer(cfg, xla=True, shards=2)(model, x), Scorer(cfg, xla=True)(model, x))


def test_scorer_of_no_images_is_an_empty_table() -> None:  # Keras's own predict fails there
    cfg = _config()
    assert Scorer(cfg, xla=True)(build_model(cfg.model, (28, 28)), _images(0)).shape == (0, 10)


def test_scorer_follows_the_weights_of_each_call() -> None:
    """Built once per run and reused every epoch: a stale copy of the weights would score the wrong model."""
    cfg = _config()
    scorer, model, x = Scorer(cfg, xla=True, shards=2), build_model(_config().model, (28, 28)), _images(70)
    first = scorer(model, x)
    model.set_weights([w + 0.1 for w in model.get_weights()])
    second = scorer(model, x)
    assert np.abs(first - second).max() > 1e-3  # the change reached the scores
    np.testing.assert_allclose(second, keras_predict(model, x, 64), atol=1e-5)


def test_scorer_of_a_stateful_model_scores_every_image_statelessly() -> None:
    cfg = Config.model_validate(
        {"model": {"units": [8]}, "train": {"stateful": True, "batch_size": 4, "eval_batch_size": 32}}
    )
    trained = build_model(cfg.model, (28, 28), batch_size=4, stateful=True)
    x = _images(41)
    expected = keras_predict(inference_model(cfg, trained), x, 32)
    np.testing.assert_allclose(Scorer(cfg, xla=True)(trained, x), expected, atol=1e-5)
    np.testing.assert_allclose(Scorer(cfg, xla=False)(trained, x), expected, atol=1e-6)


def test_scoring_uses_xla_on_a_cpu_without_a_strategy_only() -> None:
    cfg = Config()
    assert plan_scoring(cfg, "/CPU:0")
    assert not plan_scoring(cfg, "/GPU:0")  # cuDNN's kernels, which XLA would replace
    mirrored = cfg.model_copy(update={"train": cfg.train.model_copy(update={"strategy": Strategy.mirrored})})
    assert not plan_scoring(mirrored, "/CPU:0")


@pytest.mark.parametrize(
    ("vector", "cores", "threads", "shards"),
    [("AVX-512", 2, None, 2), ("AVX-512", 1, None, 1), ("AVX-512", 2, 1, 1), ("AVX2", 2, None, 2)],
)
def test_scoring_shards_one_per_core_on_either_cpu_kind(
    vector: str, cores: int, threads: int | None, shards: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr("mnist_rnn.cpu.cpu_facts", lambda: ("AMD EPYC", vector))
    cfg = Config.model_validate({"train": {"cpu_threads": threads}})
    assert scoring_shards(cfg, xla=True) == shards
    assert scoring_shards(cfg, xla=False) == 1  # off the XLA scoring path (a GPU, a strategy)
