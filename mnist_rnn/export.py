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
probabilities must match the Keras model's (max |Δ| bounds: `artefacts.FORMATS`; quantized TFLite: the
same class on at least 99.9% of the images). Its accuracy on the whole test split and the figures go to
manifest.json.

Every artefact takes sequences in the layout's plain order. For `permuted_pixels` the permutation is the
first op of the graph (a Gather), so a server feeds plain row-major pixels and cannot forget it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnist_rnn import runs
from mnist_rnn.artefacts import FORMATS, INPUT_NAME, MANIFEST, ExportFormat
from mnist_rnn.config import Cell, Config
from mnist_rnn.data import load_dataset
from mnist_rnn.errors import ExportError, UsageError
from mnist_rnn.layouts import input_permutation, to_model_order
from mnist_rnn.mnist import NUM_CLASSES
from mnist_rnn.trained import TrainedRun, keras_predict

QUANTIZED_AGREEMENT = 0.999
PARITY_IMAGES = 1_000

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
    return the manifest. Raises ExportError with the figures if a parity bound is broken."""
    if fmt not in set(ExportFormat):
        raise UsageError(f"unknown format {fmt!r}; use one of: {', '.join(ExportFormat)}")
    form = FORMATS[ExportFormat(fmt)]
    if quantize not in (None, "dynamic") or (quantize and not form.quantizable):
        quantizable = ", ".join(f"--format {f}" for f, known in FORMATS.items() if known.quantizable)
        raise UsageError(f"--quantize dynamic applies to {quantizable} only")
    run = TrainedRun(run_dir, checkpoint, warn=log)
    cfg, source = run.cfg, run.path  # a missing checkpoint fails before any data is loaded
    target = out or run_dir / "export" / (f"{fmt}-dynamic" if quantize else fmt)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target}: exists and is not a directory; pass another --out")
    test = load_dataset(cfg.data, cfg.seed).test

    # Written beside the target and swapped in when complete: a failed export leaves the old one intact.
    with runs.staged_dir(target) as tmp:
        files = form.write(cfg, run.model, tmp, quantize)
        log(f"wrote {fmt}{' (dynamic-range quantized)' if quantize else ''}; checking it in its own runtime")
        reference = keras_predict(run.inference_model, test.x, cfg.train.eval_batch_size)
        got = form.load(tmp, quantize)(_plain(test.x, cfg))
        manifest = {
            "format": fmt,
            "quantize": quantize,
            "source_checkpoint": str(source),
            "source_epoch": run.state.get("epoch"),
            **_contract(fmt, test.x.shape[1:], cfg),
            "parity": _parity(got, reference, form.max_prob_diff, quantize),
            "test_samples": len(test),
            "test_accuracy": float((got.argmax(1) == test.y).mean()),
            "keras_test_accuracy": float((reference.argmax(1) == test.y).mean()),
            "files": {name: _size(tmp / name) for name in files},
        }
        runs.atomic_write_json(tmp / MANIFEST, manifest)
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
    order, form = input_permutation(cfg.data), FORMATS[ExportFormat(fmt)]
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
    custom = cfg.model.cell is Cell.janet or order is not None
    return {
        "requires": "import mnist_rnn.layers before keras.saving.load_model"
        if fmt == ExportFormat.keras and custom
        else None,
        "inputs": [{"name": INPUT_NAME, "shape": [form.batch, *sample_shape], "dtype": "float32"}],
        "outputs": [
            {"name": "probabilities", "shape": [None, NUM_CLASSES], "dtype": "float32"},
            *([{"name": "class_ids", "shape": [None], "dtype": "int32"}] if form.class_ids else []),
        ],
        "preprocessing": preprocessing,
    }


def _parity(got: np.ndarray, reference: np.ndarray, bound: float, quantize: str | None) -> dict[str, Any]:
    """The artefact's probabilities against the Keras model's on the first PARITY_IMAGES test images."""
    n = min(PARITY_IMAGES, len(reference))
    max_diff = float(np.abs(got[:n] - reference[:n]).max())
    same_class = float((got[:n].argmax(1) == reference[:n].argmax(1)).mean())
    ok = same_class >= QUANTIZED_AGREEMENT if quantize else max_diff <= bound
    return {
        "images": n,
        "max_abs_prob_diff": max_diff,
        "bound": None if quantize else bound,
        "same_class_fraction": same_class,
        "same_class_bound": QUANTIZED_AGREEMENT if quantize else None,
        "ok": bool(ok),
    }
