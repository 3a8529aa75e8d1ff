"""Layouts: how a 28x28 picture becomes a sequence, and the fixed permutation of permuted pixel MNIST.

Two orders matter for `permuted_pixels`. The *plain* order is what a person's picture gives
(`make_sequences`: row-major pixels); the *model* order is what the network reads (`to_model_order`: step t
is plain pixel `order[t]`). Training and scoring data are kept in model order; everything that takes a
person's picture (predict, serve, streaming from a run, every export) takes the plain order and applies the
permutation itself, so no caller can forget it.
"""

from __future__ import annotations

import numpy as np

from mnist_rnn.config import DataConfig
from mnist_rnn.mnist import IMAGE_SHAPE, LAYOUT_SHAPES, PERMUTED_LAYOUTS, Layout

# How a layout reads a picture, in words (serve's page).
READ_ORDER = {
    Layout.rows: "one row at a time, top to bottom",
    Layout.columns: "one column at a time, left to right",
    Layout.pixels: "one pixel at a time, row by row",
    Layout.permuted_pixels: "one pixel at a time in a fixed random order (permuted MNIST)",
}
# What one of the 28 calls reads when a picture is streamed a 28th at a time (explain.png, serve's page).
READ_PER_CALL = {
    Layout.rows: "image rows",
    Layout.columns: "image columns",
    Layout.pixels: "rows of pixels",
    Layout.permuted_pixels: "blocks of 28 permuted pixels",
}


def sequence_shape(layout: Layout | str) -> tuple[int, int]:
    """(steps, features) of one image in `layout`."""
    return LAYOUT_SHAPES[Layout(layout)]


def permutation(seed: int) -> np.ndarray:
    """The order in which `permuted_pixels` reads an image's 784 row-major pixels: a bijection of 0..783.

    Drawn with NumPy's legacy `RandomState`, whose stream NumPy keeps frozen across versions (NEP 19), so a
    seed names the same permutation on every machine and every NumPy; runs also save it (permutation.json).
    """
    return np.random.RandomState(seed).permutation(IMAGE_SHAPE[0] * IMAGE_SHAPE[1]).astype(np.int32)


def input_permutation(cfg: DataConfig) -> np.ndarray | None:
    """The permutation a model of this data section reads its pixels in, or None for a plain layout."""
    if cfg.layout not in PERMUTED_LAYOUTS:
        return None
    return permutation(cfg.permutation_seed or 0)


def make_sequences(images: np.ndarray, layout: Layout | str) -> np.ndarray:
    """(N, 28, 28) uint8 images -> (N, steps, features) float32 in [0, 1], in the layout's *plain* order.

    This is what a person or a server feeds a trained model: for `permuted_pixels` the plain row-major
    pixels, which the model's own input step (`to_model_order`, or the gather inside an export) permutes.
    """
    x = images.astype(np.float32) / np.float32(255.0)
    layout = Layout(layout)
    if layout is Layout.rows:
        return x  # (N, 28, 28): step t is image row t
    if layout is Layout.columns:
        return np.ascontiguousarray(x.transpose(0, 2, 1))  # step t is image column t
    return x.reshape(len(x), 28 * 28, 1)  # (N, 784, 1), row-major scan


def to_model_order(x: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """Plain sequences -> the order the model reads (step t is plain step order[t]); None: unchanged."""
    return x if order is None else np.ascontiguousarray(x[:, order])


def to_images(x: np.ndarray, layout: Layout | str, order: np.ndarray | None) -> np.ndarray:
    """Model-order sequences back to (N, 28, 28) uint8 pictures (for plots): the inverse of the above."""
    plain = x if order is None else x[:, np.argsort(order)]
    if Layout(layout) is Layout.columns:
        plain = plain.transpose(0, 2, 1)
    return np.round(plain.reshape(len(x), *IMAGE_SHAPE) * 255).astype(np.uint8)


def pixel_index(layout: Layout | str, order: np.ndarray | None) -> np.ndarray:
    """(steps, features) int32: the row-major pixel of a 28x28 picture that each model input reads, so
    that a picture's flat pixels gathered with it equal `to_model_order(make_sequences(...))`."""
    pixels = np.arange(IMAGE_SHAPE[0] * IMAGE_SHAPE[1], dtype=np.int32).reshape(1, *IMAGE_SHAPE)
    layout = Layout(layout)
    if layout is Layout.rows:
        plain = pixels
    elif layout is Layout.columns:
        plain = pixels.transpose(0, 2, 1)
    else:
        plain = pixels.reshape(1, -1, 1)
    return np.ascontiguousarray(to_model_order(plain, order)[0])
