"""Artefacts that other programs serve, each verified against the trained Keras model before success.

    saved_model  TensorFlow SavedModel, signature `serving_default`: sequence (None, 28, 28) float32 ->
                 probabilities (None, 10), class_ids (None,). Built from a CPU-safe twin (use_cudnn=False),
                 so a model trained on a GPU serves on a CPU-only machine (no CudnnRNN op in the graph).
    keras        the native .keras file of the same twin; `keras.saving.load_model`, no custom objects.
    tflite       LiteRT/TFLite flatbuffer with builtin ops only, from an unrolled batch-1 twin with frozen
                 weights (plain conversion of a Keras RNN keeps a loop over resource variables).
                 `quantize="dynamic"` adds dynamic-range int8 weights.
    onnx         through tf2onnx (the `onnx` extra), checked with onnxruntime.

After writing, the artefact is loaded in its own runtime and run on the first 1,000 test images; its
probabilities must match the Keras model's (max |Δ| bounds below; quantized TFLite: the same class on at
least 99.9% of the images). Its accuracy on the whole test split and the figures go to manifest.json.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_rnn import runs
from mnist_rnn.config import Config
from mnist_rnn.data import load_dataset, sequence_shape
from mnist_rnn.errors import ExportError
from mnist_rnn.evaluate import inference_model
from mnist_rnn.evaluate import predict as keras_predict
from mnist_rnn.model import build_twin

if TYPE_CHECKING:
    import keras

FORMATS = ("saved_model", "keras", "tflite", "onnx")
MAX_PROB_DIFF = {"saved_model": 1e-5, "keras": 1e-5, "onnx": 1e-5, "tflite": 1e-4}
QUANTIZED_AGREEMENT = 0.999
PARITY_IMAGES = 1_000
MANIFEST = "manifest.json"
INPUT_NAME = "sequence"

Predictor = Callable[[np.ndarray], np.ndarray]  # (N, steps, features) float32 -> (N, 10) probabilities


def _serving_twin(
    cfg: Config, model: keras.Model, batch_size: int | None = None, unroll: bool = False
) -> keras.Model:
    # Whole sequences, whatever the training saw (a stateful run trains on chunks with a fixed batch).
    shape = sequence_shape(cfg.data.layout)
    return build_twin(
        cfg.model, model.get_weights(), shape, batch_size=batch_size, cpu_safe=True, unroll=unroll
    )


# ------------------------------------------------------------------------------ writers, loaders
# Each writer puts the artefact into `out` and returns its file names; each loader runs it in its own
# runtime (TensorFlow, the TFLite interpreter, onnxruntime) and is shared by export checks and predict.


def _write_keras(cfg: Config, model: keras.Model, out: Path, quantize: str | None) -> list[str]:
    _serving_twin(cfg, model).save(out / "model.keras")
    return ["model.keras"]


def _load_keras(path: Path, quantize: str | None) -> Predictor:
    import keras

    loaded = keras.saving.load_model(path / "model.keras")
    return lambda x: np.asarray(loaded.predict(x, batch_size=1000, verbose=0))


def _write_saved_model(cfg: Config, model: keras.Model, out: Path, quantize: str | None) -> list[str]:
    import keras
    import tensorflow as tf

    twin = _serving_twin(cfg, model)
    steps, features = twin.input_shape[1:]

    @tf.function(input_signature=[tf.TensorSpec([None, steps, features], tf.float32, name=INPUT_NAME)])
    def serve(sequence: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = twin(sequence, training=False)
        return {
            "probabilities": probabilities,
            "class_ids": tf.argmax(probabilities, -1, output_type=tf.int32),
        }

    archive = keras.export.ExportArchive()
    archive.track(twin)
    archive.add_endpoint("serve", serve)
    archive.write_out(str(out / "saved_model"), verbose=False)
    return ["saved_model"]


def _load_saved_model(path: Path, quantize: str | None) -> Predictor:
    import tensorflow as tf

    fn = tf.saved_model.load(str(path / "saved_model")).signatures["serving_default"]

    def run(x: np.ndarray) -> np.ndarray:
        parts = [
            fn(**{INPUT_NAME: tf.constant(x[i : i + 1000])})["probabilities"] for i in range(0, len(x), 1000)
        ]
        return np.concatenate([p.numpy() for p in parts])

    return run


def _tflite_name(quantize: str | None) -> str:
    return "model_dynamic.tflite" if quantize else "model.tflite"


def _write_tflite(cfg: Config, model: keras.Model, out: Path, quantize: str | None) -> list[str]:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    twin = _serving_twin(cfg, model, batch_size=1, unroll=True)
    steps, features = twin.input_shape[1:]
    fn = tf.function(lambda s: twin(s, training=False)).get_concrete_function(
        tf.TensorSpec([1, steps, features], tf.float32, name=INPUT_NAME)
    )
    # Frozen weights: converted as is, the weights stay resource variables the interpreter never fills.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([convert_variables_to_constants_v2(fn)], twin)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex/select-TF ops
    if quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic range: int8 weights, float activations
    runs.atomic_write_bytes(out / _tflite_name(quantize), converter.convert())
    return [_tflite_name(quantize)]


def tflite_interpreter(path: Path) -> Any:
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter warns that LiteRT will replace it
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


def _load_tflite(path: Path, quantize: str | None) -> Predictor:
    interpreter = tflite_interpreter(path / _tflite_name(quantize))
    inp, outp = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        result = np.empty((len(x), 10), dtype=np.float32)
        for i in range(len(x)):  # the unrolled graph has a fixed batch of 1
            interpreter.set_tensor(inp, x[i : i + 1])
            interpreter.invoke()
            result[i] = interpreter.get_tensor(outp)[0]
        return result

    return run


def _require_onnx() -> None:
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        raise ExportError(
            "the onnx format needs the onnx extra; install it with: pip install 'mnist-rnn[onnx]'",
            exit_code=2,
        ) from None


def _write_onnx(cfg: Config, model: keras.Model, out: Path, quantize: str | None) -> list[str]:
    _require_onnx()
    import tensorflow as tf
    import tf2onnx

    twin = _serving_twin(cfg, model)
    steps, features = twin.input_shape[1:]
    spec = (tf.TensorSpec([None, steps, features], tf.float32, name=INPUT_NAME),)
    model_proto, _ = tf2onnx.convert.from_function(
        tf.function(lambda sequence: twin(sequence, training=False)), input_signature=spec, opset=17
    )
    runs.atomic_write_bytes(out / "model.onnx", model_proto.SerializeToString())
    return ["model.onnx"]


def _load_onnx(path: Path, quantize: str | None) -> Predictor:
    _require_onnx()
    import onnxruntime as ort

    session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: np.asarray(session.run(None, {name: x})[0])


_WRITERS = {
    "saved_model": _write_saved_model,
    "keras": _write_keras,
    "tflite": _write_tflite,
    "onnx": _write_onnx,
}
_LOADERS = {
    "saved_model": _load_saved_model,
    "keras": _load_keras,
    "tflite": _load_tflite,
    "onnx": _load_onnx,
}


# ----------------------------------------------------------------------------------------- export


def _size(path: Path) -> int:
    return (
        sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


def export_run(
    run_dir: Path,
    fmt: str,
    checkpoint: str = "best",
    out: Path | None = None,
    quantize: str | None = None,
    log: Callable[[str], Any] = lambda _: None,
) -> dict[str, Any]:
    """Write `fmt` for a run's checkpoint into `out` (default RUN_DIR/export/<fmt>/), verify it, and
    return the manifest. Raises ExportError (exit 1) with the figures if a parity bound is broken."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}", exit_code=2)
    if quantize not in (None, "dynamic") or (quantize and fmt != "tflite"):
        raise ExportError("--quantize dynamic applies to --format tflite only", exit_code=2)
    cfg = runs.read_run_config(run_dir)
    source = runs.find_checkpoint(run_dir, checkpoint)
    target = out or run_dir / "export" / (f"{fmt}-dynamic" if quantize else fmt)
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target}: exists and is not a directory; pass another --out", exit_code=2)
    test = load_dataset(cfg.data, cfg.seed).test
    model, state = runs.load_checkpoint(run_dir, checkpoint, warn=log)

    # Write beside the target and swap in when complete: a failed export leaves the old one intact.
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = _WRITERS[fmt](cfg, model, tmp, quantize)
        log(f"wrote {fmt}{' (dynamic-range quantized)' if quantize else ''}; checking it in its own runtime")
        reference = keras_predict(inference_model(cfg, model), test.x, cfg.train.eval_batch_size)
        got = _LOADERS[fmt](tmp, quantize)(test.x)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest = {
        "format": fmt,
        "quantize": quantize,
        "source_checkpoint": str(source),
        "source_epoch": state.get("epoch"),
        **_contract(fmt, test.x.shape[1:], str(cfg.data.layout)),
        "parity": _parity(got, reference, fmt, quantize),
        "test_samples": len(test),
        "test_accuracy": float((got.argmax(1) == test.y).mean()),
        "keras_test_accuracy": float((reference.argmax(1) == test.y).mean()),
        "files": {name: _size(tmp / name) for name in files},
    }
    runs.atomic_write_json(tmp / MANIFEST, manifest)
    _swap_in(tmp, target)
    manifest["path"] = str(target)
    if not manifest["parity"]["ok"]:
        parity = manifest["parity"]
        raise ExportError(
            f"{target}: parity check failed: max |Δprob| {parity['max_abs_prob_diff']:.2e} (bound "
            f"{parity['bound'] or '-'}), same class on {parity['same_class_fraction']:.2%} of "
            f"{parity['images']} images; the artefact was kept for inspection"
        )
    return manifest


def _contract(fmt: str, sample_shape: tuple[int, ...], layout: str) -> dict[str, Any]:
    """What a serving program must feed the artefact and what it gets back."""
    return {
        "inputs": [
            {"name": INPUT_NAME, "shape": [1 if fmt == "tflite" else None, *sample_shape], "dtype": "float32"}
        ],
        "outputs": [
            {"name": "probabilities", "shape": [None, 10], "dtype": "float32"},
            *([{"name": "class_ids", "shape": [None], "dtype": "int32"}] if fmt == "saved_model" else []),
        ],
        "preprocessing": {
            "image": "28x28 greyscale, white digit on black (MNIST); invert dark-on-light scans",
            "scale": "float32 pixel / 255, in [0, 1]",
            "layout": layout,
        },
    }


def _parity(got: np.ndarray, reference: np.ndarray, fmt: str, quantize: str | None) -> dict[str, Any]:
    """The artefact's probabilities against the Keras model's on the first PARITY_IMAGES test images."""
    n = min(PARITY_IMAGES, len(reference))
    max_diff = float(np.abs(got[:n] - reference[:n]).max())
    same_class = float((got[:n].argmax(1) == reference[:n].argmax(1)).mean())
    ok = same_class >= QUANTIZED_AGREEMENT if quantize else max_diff <= MAX_PROB_DIFF[fmt]
    return {
        "images": n,
        "max_abs_prob_diff": max_diff,
        "bound": None if quantize else MAX_PROB_DIFF[fmt],
        "same_class_fraction": same_class,
        "same_class_bound": QUANTIZED_AGREEMENT if quantize else None,
        "ok": bool(ok),
    }


def _swap_in(tmp: Path, target: Path) -> None:
    """Replace `target` by the finished `tmp` folder, the old one removed only once the new is in place."""
    previous = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, previous)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    shutil.rmtree(previous, ignore_errors=True)


def load_artefact(export_dir: Path) -> tuple[dict[str, Any], Predictor]:
    """An export folder's manifest and a predictor that runs the artefact in its own runtime."""
    try:
        manifest = json.loads((export_dir / MANIFEST).read_text())
        fmt, quantize = manifest["format"], manifest.get("quantize")
    except (OSError, ValueError, KeyError) as exc:
        raise ExportError(f"{export_dir}: not a readable export ({exc})", exit_code=2) from None
    if fmt not in _LOADERS:
        raise ExportError(f"{export_dir}: unknown format {fmt!r} in {MANIFEST}", exit_code=2)
    return manifest, _LOADERS[fmt](export_dir, quantize)
