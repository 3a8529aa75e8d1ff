"""The four artefact formats: each one's writer and its loader (which runs it in its own runtime).

`export.py` decides what to export and checks it; this module only knows how each format is written and
read back (`FORMATS`: every fact about a format, in one place). Every writer starts from `serving_model`:
the trained weights in stock Keras layers, over whole sequences, in the layout's plain order (a permuted
layout's gather is the graph's first op). An export folder holds one artefact and its `manifest.json`;
`load_artefact` reads it back for predict and serve.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_rnn import runs
from mnist_rnn.config import Config
from mnist_rnn.errors import RunError, UsageError
from mnist_rnn.layouts import input_permutation, sequence_shape
from mnist_rnn.mnist import NUM_CLASSES
from mnist_rnn.model import build_twin

if TYPE_CHECKING:
    import keras

INPUT_NAME = "sequence"
MANIFEST = "manifest.json"  # an export folder's description (export.py writes it); its presence marks one


class ExportFormat(StrEnum):
    """The artefacts `mnist-rnn export --format` writes (their facts: `FORMATS`)."""

    saved_model = "saved_model"
    keras = "keras"
    tflite = "tflite"
    onnx = "onnx"


Predictor = Callable[[np.ndarray], np.ndarray]  # (N, steps, features) float32 -> (N, 10) probabilities


def serving_model(
    cfg: Config, model: keras.Model, batch_size: int | None = None, unroll: bool = False
) -> keras.Model:
    """The model an artefact is made from: stock layers, whole sequences, plain input order."""
    # Whole sequences, whatever the training saw (a stateful run trains on chunks with a fixed batch).
    import keras

    shape = sequence_shape(cfg.data.layout)
    twin = build_twin(
        cfg.model, model.get_weights(), shape, batch_size=batch_size, cpu_safe=True, unroll=unroll
    )
    order = input_permutation(cfg.data)
    if order is None:
        return twin
    from mnist_rnn.layers import PermuteSteps

    plain = keras.Input(shape=shape, batch_size=batch_size, name=INPUT_NAME)
    permuted = PermuteSteps([int(i) for i in order], name="permute_pixels")(plain)
    return keras.Model(plain, twin(permuted), name=f"{twin.name}_permuted")


# ------------------------------------------------------------------------------ writers, loaders
# Each writer puts the artefact into `out` and returns its file names; each loader runs it in its own
# runtime (TensorFlow, the TFLite interpreter, onnxruntime) and is shared by export checks and predict.


def _write_keras(cfg: Config, model: keras.Model, out: Path, quantize: str | None) -> list[str]:
    serving_model(cfg, model).save(out / "model.keras")
    return ["model.keras"]


def _load_keras(path: Path, quantize: str | None) -> Predictor:
    import keras

    import mnist_rnn.layers  # noqa: F401  (registers JANETCell and PermuteSteps for load_model)

    loaded = keras.saving.load_model(path / "model.keras")
    return lambda x: np.asarray(loaded.predict(x, batch_size=1000, verbose=0))


def _write_saved_model(cfg: Config, model: keras.Model, out: Path, quantize: str | None) -> list[str]:
    import keras
    import tensorflow as tf

    twin = serving_model(cfg, model)
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

    twin = serving_model(cfg, model, batch_size=1, unroll=True)
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
        result = np.empty((len(x), NUM_CLASSES), dtype=np.float32)
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
        raise UsageError(
            "the onnx format needs the onnx extra; install it with: pip install 'mnist-rnn[onnx]'"
        ) from None


def _write_onnx(cfg: Config, model: keras.Model, out: Path, quantize: str | None) -> list[str]:
    _require_onnx()
    import tensorflow as tf
    import tf2onnx

    twin = serving_model(cfg, model)
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


Writer = Callable[[Config, "keras.Model", Path, str | None], list[str]]
Loader = Callable[[Path, str | None], Predictor]


@dataclass(frozen=True)
class Format:
    write: Writer
    load: Loader
    max_prob_diff: float  # parity: the bound on |Δprob| against the Keras model (quantized: same class)
    batch: int | None = None  # a fixed batch size (TFLite's unrolled graph), else any
    class_ids: bool = False  # a `class_ids` output beside the probabilities (SavedModel's signature)
    quantizable: bool = False  # takes --quantize dynamic


FORMATS: dict[ExportFormat, Format] = {
    ExportFormat.saved_model: Format(_write_saved_model, _load_saved_model, 1e-5, class_ids=True),
    ExportFormat.keras: Format(_write_keras, _load_keras, 1e-5),
    ExportFormat.tflite: Format(_write_tflite, _load_tflite, 1e-4, batch=1, quantizable=True),
    ExportFormat.onnx: Format(_write_onnx, _load_onnx, 1e-5),
}


def load_artefact(export_dir: Path) -> tuple[dict[str, Any], Predictor]:
    """An export folder's manifest and a predictor that runs the artefact in its own runtime."""
    try:
        manifest = json.loads((export_dir / MANIFEST).read_text())
        fmt, quantize = manifest["format"], manifest.get("quantize")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{export_dir}: not a readable export ({exc}); export the run again") from None
    if fmt not in set(ExportFormat):
        raise RunError(f"{export_dir}: unknown format {fmt!r} in {MANIFEST}; export the run again")
    return manifest, FORMATS[ExportFormat(fmt)].load(export_dir, quantize)
