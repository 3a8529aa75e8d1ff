"""Artefacts that other programs serve, each verified against the trained Keras model before success.

    saved_model  TensorFlow SavedModel, signature `serving_default`: sequence (None, 28, 28) float32 ->
                 probabilities (None, 10), class_ids (None,). Built from a CPU-safe twin (use_cudnn=False),
                 so a model trained on a GPU serves on a CPU-only machine (no CudnnRNN op in the graph).
    keras        the native .keras file of the same twin; `keras.saving.load_model`, no custom objects for
                 LSTM/GRU/SimpleRNN on plain layouts; a JANET cell or a permuted layout needs
                 `import mnist_rnn.layers` first (the manifest's `requires` says so).
    tflite       LiteRT/TFLite flatbuffer with builtin ops only, from an unrolled batch-1 twin with frozen
                 weights (plain conversion of a Keras RNN keeps a loop over resource variables).
                 `quantize="dynamic"` adds dynamic-range int8 weights.
    onnx         through tf2onnx (the `onnx` extra), checked with onnxruntime.

After writing, the artefact is loaded in its own runtime and run on the first 1,000 test images; its
probabilities must match the Keras model's (max |Δ| bounds below; quantized TFLite: the same class on at
least 99.9% of the images). Its accuracy on the whole test split and the figures go to manifest.json.

Every artefact takes sequences in the layout's plain order. For `permuted_pixels` the permutation is the
first op of the graph (a Gather), so a server feeds plain row-major pixels and cannot forget it.
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
from mnist_rnn.artefacts import INPUT_NAME, LOADERS, WRITERS, Predictor
from mnist_rnn.config import Config
from mnist_rnn.data import load_dataset
from mnist_rnn.errors import ExportError
from mnist_rnn.evaluate import inference_model
from mnist_rnn.evaluate import predict as keras_predict
from mnist_rnn.layouts import input_permutation, to_model_order

if TYPE_CHECKING:
    pass

FORMATS = ("saved_model", "keras", "tflite", "onnx")
MAX_PROB_DIFF = {"saved_model": 1e-5, "keras": 1e-5, "onnx": 1e-5, "tflite": 1e-4}
QUANTIZED_AGREEMENT = 0.999
PARITY_IMAGES = 1_000
MANIFEST = "manifest.json"

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
        files = WRITERS[fmt](cfg, model, tmp, quantize)
        log(f"wrote {fmt}{' (dynamic-range quantized)' if quantize else ''}; checking it in its own runtime")
        reference = keras_predict(inference_model(cfg, model), test.x, cfg.train.eval_batch_size)
        got = LOADERS[fmt](tmp, quantize)(_plain(test.x, cfg))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest = {
        "format": fmt,
        "quantize": quantize,
        "source_checkpoint": str(source),
        "source_epoch": state.get("epoch"),
        **_contract(fmt, test.x.shape[1:], cfg),
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


def _plain(x: np.ndarray, cfg: Config) -> np.ndarray:
    """Model-order test sequences back to the plain order an artefact takes."""
    order = input_permutation(cfg.data)
    return x if order is None else to_model_order(x, np.argsort(order))


def _contract(fmt: str, sample_shape: tuple[int, ...], cfg: Config) -> dict[str, Any]:
    """What a serving program must feed the artefact and what it gets back."""
    order = input_permutation(cfg.data)
    preprocessing: dict[str, Any] = {
        "image": "28x28 greyscale, white digit on black (MNIST); invert dark-on-light scans",
        "scale": "float32 pixel / 255, in [0, 1]",
        "layout": str(cfg.data.layout),
    }
    if order is not None:
        preprocessing["permutation"] = {
            "seed": cfg.data.permutation_seed,
            "applied_in_graph": True,  # feed plain row-major pixels; the artefact gathers them itself
            "order": [int(i) for i in order],
        }
    custom = cfg.model.cell == "janet" or order is not None
    return {
        "requires": "import mnist_rnn.layers before keras.saving.load_model"
        if fmt == "keras" and custom
        else None,
        "inputs": [
            {"name": INPUT_NAME, "shape": [1 if fmt == "tflite" else None, *sample_shape], "dtype": "float32"}
        ],
        "outputs": [
            {"name": "probabilities", "shape": [None, 10], "dtype": "float32"},
            *([{"name": "class_ids", "shape": [None], "dtype": "int32"}] if fmt == "saved_model" else []),
        ],
        "preprocessing": preprocessing,
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
    if fmt not in LOADERS:
        raise ExportError(f"{export_dir}: unknown format {fmt!r} in {MANIFEST}", exit_code=2)
    return manifest, LOADERS[fmt](export_dir, quantize)
