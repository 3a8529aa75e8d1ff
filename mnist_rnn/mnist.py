"""MNIST's facts, at the bottom of the package: sizes, sources, and the layouts that read a picture as a
sequence with their shapes. The config schema validates against these and every other module reads them
here, so nothing below the schema needs to import it back (docs/architecture.md, levels)."""

from __future__ import annotations

from enum import StrEnum

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
TRAIN_POOL = 60_000  # images in MNIST's training file; validation is carved out of these
TEST_SIZE = 10_000


class Source(StrEnum):
    embedded = "embedded"  # the copy of the real MNIST inside the package (offline, default)
    idx = "idx"  # IDX files (gzip or raw) from data.dir or $MNIST_RNN_DATA_DIR
    tfds = "tfds"  # tensorflow-datasets
    synthetic = "synthetic"  # class-dependent noise for tests; never chosen unless asked for


class Layout(StrEnum):
    rows = "rows"  # 28 steps of 28 features, one image row per step
    columns = "columns"  # 28 steps of 28 features, one image column per step (the image transposed)
    pixels = "pixels"  # 784 steps of 1 feature, one pixel per step, row-major (pixel MNIST)
    permuted_pixels = "permuted_pixels"  # 784 steps of 1 feature in one fixed random order (pMNIST)


LAYOUT_SHAPES = {  # (steps, features)
    Layout.rows: (28, 28),
    Layout.columns: (28, 28),
    Layout.pixels: (784, 1),
    Layout.permuted_pixels: (784, 1),
}
PERMUTED_LAYOUTS = (Layout.permuted_pixels,)
