"""Classify image files (PNG, JPEG, ...) or IDX files with a run's checkpoint or an exported artefact.

A picture of any size is prepared as MNIST's digits were (`images.prepare_digit`: polarity told from its
border, faint noise dropped, the digit cropped, its longer side scaled to 20 px, centred by mass in 28x28),
then goes through exactly the preprocessing training used (`data.make_sequences`: pixel / 255, the run's
layout). `invert` overrides the polarity (True: dark ink on light paper; False: light on dark);
`normalize=False` keeps the old plain resize for pictures that are already MNIST-like. IDX files are MNIST
already and are used as they are. A file that cannot be read is reported on its own line and the others
are still classified.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_rnn import runs
from mnist_rnn.artefacts import Predictor
from mnist_rnn.config import Layout
from mnist_rnn.data import read_idx
from mnist_rnn.errors import DataError, RunError
from mnist_rnn.evaluate import inference_model
from mnist_rnn.evaluate import predict as keras_predict
from mnist_rnn.export import MANIFEST, load_artefact
from mnist_rnn.images import prepare_digit
from mnist_rnn.layouts import input_permutation, make_sequences, to_model_order
from mnist_rnn.mnist import IMAGE_SHAPE

_IDX_IMAGES_MAGIC = (2051).to_bytes(4, "big")


@dataclass(frozen=True)
class Prediction:
    file: str
    label: int
    confidence: float
    probabilities: list[float]


def _is_idx(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path) as g:
                head = g.read(4)
        except (OSError, EOFError):
            return False
    return head == _IDX_IMAGES_MAGIC


def read_inputs(
    paths: list[Path], invert: bool | None = None, normalize: bool = True
) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """(name, image) pairs for every readable file (an IDX file gives `file[i]` for each image), and one
    error line per unreadable file."""
    images: list[tuple[str, np.ndarray]] = []
    errors: list[str] = []
    for path in paths:
        try:
            if not path.is_file():
                raise DataError(f"{path}: {'is a directory' if path.is_dir() else 'file not found'}")
            if _is_idx(path):
                stack = read_idx(path, 3)
                if stack.shape[1:] != IMAGE_SHAPE:
                    raise DataError(f"{path}: IDX images are {stack.shape[1:]}, expected 28x28")
                images += [(f"{path}[{i}]", 255 - img if invert else img) for i, img in enumerate(stack)]
            else:
                images.append((str(path), prepare_digit(path, invert, normalize)))
        except DataError as exc:
            errors.append(str(exc))
    return images, errors


def load_predictor(source: Path) -> tuple[Predictor, Layout, str]:
    """A run directory (its best checkpoint) or an export folder (its artefact, in its own runtime).

    Either predictor takes sequences in the layout's plain order (`make_sequences`): a run's applies its
    permutation here, an artefact inside its own graph."""
    if (source / MANIFEST).is_file():
        manifest, predictor = load_artefact(source)
        # Named by folder, not by path: serve shows this to whoever opens its page.
        layout = Layout(manifest["preprocessing"]["layout"])
        return predictor, layout, f"{manifest['format']} export {source.resolve().name}"
    run_dir, checkpoint = runs.resolve_run_dir(source)
    cfg = runs.read_run_config(run_dir)
    model = inference_model(cfg, runs.load_checkpoint(run_dir, checkpoint)[0])
    batch, order = cfg.train.eval_batch_size, input_permutation(cfg.data)
    return (
        lambda x: keras_predict(model, to_model_order(x, order), batch),
        cfg.data.layout,
        f"checkpoint {checkpoint} of {run_dir.resolve().name}",
    )


def predict_files(
    source: Path, paths: list[Path], invert: bool | None = None, normalize: bool = True
) -> tuple[list[Prediction], list[str], str]:
    if not source.exists():
        raise RunError(f"{source}: no such run directory or export folder")
    images, errors = read_inputs(paths, invert, normalize)
    if not images:  # nothing to classify: report the files without loading a model
        return [], errors, str(source)
    predictor, layout, described = load_predictor(source)
    probs = predictor(make_sequences(np.stack([img for _, img in images]), layout))
    predictions = [
        Prediction(name, int(p.argmax()), float(p.max()), [float(v) for v in p])
        for (name, _), p in zip(images, probs, strict=True)
    ]
    return predictions, errors, described


def as_json(predictions: list[Prediction], errors: list[str]) -> dict[str, Any]:
    return {
        "predictions": [
            {"file": p.file, "class": p.label, "confidence": p.confidence, "probabilities": p.probabilities}
            for p in predictions
        ],
        "errors": errors,
    }
