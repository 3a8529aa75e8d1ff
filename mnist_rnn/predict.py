"""Classify image files (PNG, JPEG, ...) or IDX files with a run's checkpoint or an exported artefact.

A picture of any size is prepared as MNIST's digits were (`images.prepare_digit`: polarity told from its
border, faint noise dropped, the digit cropped, its longer side scaled to 20 px, centred by mass in 28x28),
then goes through exactly the preprocessing training used (`layouts.make_sequences`: pixel / 255, the run's
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

from mnist_rnn.data import read_idx
from mnist_rnn.errors import DataError, RunError
from mnist_rnn.images import prepare_digit
from mnist_rnn.layouts import make_sequences
from mnist_rnn.mnist import IMAGE_SHAPE
from mnist_rnn.trained import open_model

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
) -> tuple[list[tuple[str, np.ndarray]], list[DataError]]:
    """(name, image) pairs for every readable file (an IDX file gives `file[i]` for each image), and one
    error line per unreadable file."""
    images: list[tuple[str, np.ndarray]] = []
    errors: list[DataError] = []
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
            errors.append(exc)
    return images, errors


def predict_files(
    source: Path, paths: list[Path], invert: bool | None = None, normalize: bool = True
) -> tuple[list[Prediction], list[DataError], str]:
    """Classify the readable files with a run (its best checkpoint) or an export folder; the others come
    back as one error each. Both predictors take the layout's plain order (`make_sequences`)."""
    if not source.exists():
        raise RunError(f"{source}: no such run directory or export folder")
    images, errors = read_inputs(paths, invert, normalize)
    if not images:  # nothing to classify: report the files without loading a model
        return [], errors, str(source)
    model = open_model(source)
    probs = model.predictor()(make_sequences(np.stack([img for _, img in images]), model.layout))
    predictions = [
        Prediction(name, int(p.argmax()), float(p.max()), [float(v) for v in p])
        for (name, _), p in zip(images, probs, strict=True)
    ]
    return predictions, errors, model.described


def as_json(predictions: list[Prediction], errors: list[DataError]) -> dict[str, Any]:
    return {
        "predictions": [
            {"file": p.file, "class": p.label, "confidence": p.confidence, "probabilities": p.probabilities}
            for p in predictions
        ],
        "errors": [str(e) for e in errors],
    }
