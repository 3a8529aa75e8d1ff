"""The benchmark's pieces through the real entry points: a permuted run read the same way by training,
eval, predict, streaming and every export; JANET trained stateful by chunks, streamed and exported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mnist_rnn import artefacts, export, runs
from mnist_rnn.config_files import load_config
from mnist_rnn.data import load_dataset
from mnist_rnn.evaluate import evaluate_run
from mnist_rnn.layouts import permutation
from mnist_rnn.trained import TrainedRun, keras_predict, open_model
from tests.conftest import TINY, plain_test_images, train_run

# Real MNIST, so that the pictures fed to predict, streaming and exports below can be the plain IDX pixels
# themselves, read without the package's loader: a loader that stopped permuting would then be caught.
PERMUTED = {
    **TINY,
    "data": {
        "source": "embedded",
        "layout": "permuted_pixels",
        "permutation_seed": 5,
        "validation": 256,
        "limit_train": 512,
        "limit_test": 256,
    },
    "model": {"cell": "lstm", "units": [8]},
    "train": {**TINY["train"], "epochs": 1, "jit_compile": "off"},
}


@pytest.fixture(scope="module")
def permuted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run(PERMUTED, tmp_path_factory.mktemp("permuted") / "run").run_dir


@pytest.fixture(scope="module")
def plain_and_reference(permuted_run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The real test images in plain pixel order (straight from the IDX file), their labels, and the
    trained model's probabilities for them (computed on the model-order sequences the run trained on)."""
    cfg = load_config(permuted_run / "config.yaml")
    test = load_dataset(cfg.data, cfg.seed).test
    plain = plain_test_images(len(test.x))
    model, _ = runs.load_checkpoint(permuted_run, "best")
    return plain, test.y, keras_predict(model, test.x, 256)


def test_the_run_saves_its_permutation(permuted_run: Path) -> None:
    saved = json.loads((permuted_run / runs.PERMUTATION).read_text())
    assert saved["seed"] == 5
    np.testing.assert_array_equal(saved["order"], permutation(5))
    assert "permutation_seed: 5" in (permuted_run / "config.yaml").read_text()


def test_predict_and_streaming_permute_plain_pixels_as_training_did(
    permuted_run: Path, plain_and_reference: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    plain, _, reference = plain_and_reference
    run = TrainedRun.open(permuted_run)
    assert run.layout == "permuted_pixels"
    np.testing.assert_allclose(run.predictor()(plain), reference, atol=1e-6)
    streamed = TrainedRun.open(permuted_run).streamer(28).stream(plain[0])
    np.testing.assert_allclose(streamed[-1], reference[0], atol=1e-5)
    # and the order matters: the same model fed the plain pixels unpermuted says something else
    model, _ = runs.load_checkpoint(permuted_run, "best")
    assert np.abs(keras_predict(model, plain, 256) - reference).max() > 1e-3


def test_eval_scores_the_permuted_test_split(
    permuted_run: Path, plain_and_reference: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    _, labels, reference = plain_and_reference
    report = evaluate_run(permuted_run, split="test")
    assert report["accuracy"] == pytest.approx(float((reference.argmax(1) == labels).mean()))


@pytest.mark.parametrize(
    "fmt", ["saved_model", "keras", "onnx", pytest.param("tflite", marks=pytest.mark.slow)]
)
def test_every_export_gathers_the_pixels_itself(
    permuted_run: Path, plain_and_reference: tuple[np.ndarray, np.ndarray, np.ndarray], fmt: str
) -> None:
    if fmt == "onnx":
        pytest.importorskip("tf2onnx")
    plain, _, reference = plain_and_reference
    manifest = export.export_run(permuted_run, fmt)
    assert manifest["parity"]["ok"]
    assert manifest["preprocessing"]["permutation"]["applied_in_graph"] is True
    assert manifest["preprocessing"]["permutation"]["order"] == permutation(5).tolist()
    assert (manifest["requires"] is not None) == (fmt == "keras")
    _, artefact = artefacts.load_artefact(Path(manifest["path"]))
    np.testing.assert_allclose(
        artefact(plain[:20]), reference[:20], atol=artefacts.FORMATS[fmt].max_prob_diff
    )


JANET_CHUNKED = {
    **TINY,
    "data": {**TINY["data"], "layout": "rows", "chunk_steps": 7},
    "model": {"cell": "janet", "units": [16, 16]},
    "train": {**TINY["train"], "stateful": True, "epochs": 6},
}


@pytest.fixture(scope="module")
def janet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run(JANET_CHUNKED, tmp_path_factory.mktemp("janet") / "run").run_dir


def test_janet_trains_stateful_by_chunks_and_learns(janet_run: Path) -> None:
    metrics = json.loads((janet_run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 6
    # Measured on this data: 0.78 after 6 epochs (chrono forget biases start slowly; 0.39 after 3, where
    # an LSTM of the same shape has 0.70). A cell that cannot carry what it read stays near chance (0.1).
    assert metrics["test_accuracy"] > 0.7
    losses = [float(row["loss"]) for row in runs.read_history(janet_run)]
    assert losses[-1] < 0.8 * losses[0]
    assert "forget_bias: chrono" in (janet_run / "config.yaml").read_text()


def test_janet_streams_row_by_row_to_the_whole_sequence_prediction(janet_run: Path) -> None:
    cfg = load_config(janet_run / "config.yaml")
    x = load_dataset(cfg.data, cfg.seed).test.x[:3]
    whole = open_model(janet_run).predictor()
    streamer = TrainedRun.open(janet_run).streamer(1)
    for i in range(3):
        np.testing.assert_allclose(streamer.stream(x[i])[-1], whole(x[i : i + 1])[0], atol=1e-5)


@pytest.mark.parametrize("fmt", ["saved_model", "keras", "tflite", "onnx"])
def test_janet_exports_to_every_format_within_its_bound(janet_run: Path, fmt: str) -> None:
    if fmt == "onnx":
        pytest.importorskip("tf2onnx")
    manifest = export.export_run(janet_run, fmt)
    assert manifest["parity"]["ok"], manifest["parity"]
    assert manifest["parity"]["max_abs_prob_diff"] <= artefacts.FORMATS[fmt].max_prob_diff
    if fmt == "tflite":  # builtin ops only, no loop left
        from mnist_rnn.artefacts import tflite_interpreter

        interpreter = tflite_interpreter(Path(manifest["path"]) / "model.tflite")
        ops = {op["op_name"] for op in interpreter._get_ops_details()}
        assert ops and not ops & {"CUSTOM", "FlexDelegate", "WHILE", "READ_VARIABLE"}, ops


def test_permuted_pixels_train_by_chunks_like_pixels(tmp_path: Path) -> None:
    chunked = {
        **PERMUTED,
        "data": {**PERMUTED["data"], "chunk_steps": 112, "limit_train": 256},
        "train": {**PERMUTED["train"], "stateful": True},
    }
    result = train_run(chunked, tmp_path / "run")
    assert result.metrics["epochs_run"] == 1
    # the figure training reports is what eval of the same checkpoint gets on the same split
    assert evaluate_run(result.run_dir)["accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    cfg = load_config(result.run_dir / "config.yaml")
    test = load_dataset(cfg.data, cfg.seed).test
    plain = plain_test_images(2)
    # the stateless twin that scored the run and a predictor fed plain pixels agree
    np.testing.assert_allclose(
        open_model(result.run_dir).predictor()(plain), _scored(result.run_dir, test.x[:2]), atol=1e-6
    )


def _scored(run_dir: Path, x: np.ndarray) -> np.ndarray:
    from mnist_rnn.trained import inference_model

    cfg = load_config(run_dir / "config.yaml")
    model, _ = runs.load_checkpoint(run_dir, "best")
    return keras_predict(inference_model(cfg, model), x, 2)
