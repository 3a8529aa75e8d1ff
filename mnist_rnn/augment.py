"""Data augmentation: random transforms of training images inside the tf.data pipeline (`data.augment`).

Every transform is drawn per image from a stateless seed made of (seed, epoch, batch), so a batch is the
same whichever thread makes it, and a run resumed part-way through an epoch sees exactly the batches of an
uninterrupted one. The images are transformed as pictures (28x28, values in [0, 1]) and only then read out
in the layout's order (`layouts.pixel_index`), so rows, columns, pixels and permuted pixels all get them.
A transform whose range is zero is skipped: zero strength is exactly no augmentation.

The order: stroke thickness (grey-level dilation or erosion, blended between whole pixels), then one
bilinear resampling for the whole geometry (rotation, shear and scale about the centre, translation, and
the smoothed random displacement field of Simard, Steinkraus & Platt 2003), then a Gaussian blur with a
sigma of its own per image. Everything is batched tensor arithmetic on 28x28 pictures; the resampling is
TensorFlow's ImageProjectiveTransformV3 kernel unless an elastic field needs per-pixel gathers, which
cost about twice as much (scripts/augment_cost.py measures both against plain batches).
Validation, test, predict and serve never see any of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from mnist_rnn.config import AugmentConfig
from mnist_rnn.mnist import IMAGE_SHAPE

SIDE = IMAGE_SHAPE[0]
PIXELS = SIDE * SIDE
_CENTRE = (SIDE - 1) / 2.0
_TRANSFORMS = 7  # independent random streams per batch, one per kind of draw
# the column (x) and row (y) of each output pixel, row-major
_GRID_X = np.tile(np.arange(SIDE, dtype=np.float32), SIDE)[None]
_GRID_Y = np.repeat(np.arange(SIDE, dtype=np.float32), SIDE)[None]
Draw = Callable[..., tf.Tensor]  # (stream, limit, extra shape) -> uniform draws in [-limit, limit]


def augmented_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    cfg: AugmentConfig,
    index: np.ndarray,
    key: tuple[int, int, int],
) -> tf.data.Dataset:
    """Batches of (augmented sequences, labels) from (N, 28, 28) uint8 `images` in batch order.

    `index` (steps, features) names the pixel each input reads (`layouts.pixel_index`); `key` is
    (seed, epoch, first batch): batch k of the epoch draws from (seed, epoch, k) alone.
    """
    seed, epoch, first = key
    base = tf.constant([seed, epoch], dtype=tf.int64)
    gather = tf.constant(index, dtype=tf.int32)

    def prepare(step: tf.Tensor, batch: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        pictures, y = batch
        x = augment_images(tf.cast(pictures, tf.float32) / 255.0, cfg, batch_seed(base, step))
        return tf.gather(tf.reshape(x, [-1, PIXELS]), gather, axis=1), y

    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size).enumerate(start=first)
    # Each element is a pure function of its seed, so parallel calls keep the batches bit for bit.
    return batches.map(prepare, num_parallel_calls=2, deterministic=True).prefetch(2)


def batch_seed(base: tf.Tensor, step: tf.Tensor | int) -> tf.Tensor:
    """The stateless seed of one batch: (seed, epoch) folded with the batch's number."""
    return tf.random.experimental.stateless_fold_in(base, tf.cast(step, tf.int64))


def augment_images(x: tf.Tensor, cfg: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    """(B, 28, 28) float32 pictures in [0, 1] -> transformed pictures, each with its own draw."""
    seeds = tf.random.experimental.stateless_split(seed, _TRANSFORMS)
    n = tf.shape(x)[0]

    def draw(i: int, limit: float, shape: tuple[int, ...] = ()) -> tf.Tensor:
        return tf.random.stateless_uniform([n, *shape], seeds[i], -limit, limit)

    if cfg.thickness:
        x = _thickness(x, draw(0, cfg.thickness), math.ceil(cfg.thickness))
    if cfg.rotation or cfg.translate or cfg.scale or cfg.shear or cfg.elastic_alpha:
        rows, cols = _affine(cfg, draw)
        if cfg.elastic_alpha:
            field = _smooth(draw(5, 1.0, (2, SIDE, SIDE)), cfg.elastic_sigma) * cfg.elastic_alpha
            x = _bilinear(x, _sources(rows) + _flat(field[:, 0]), _sources(cols) + _flat(field[:, 1]))
        else:  # TensorFlow's own kernel: a third of the gathers' cost, the same picture to 1e-5
            transforms = tf.stack([*cols, *rows, tf.zeros_like(rows[0]), tf.zeros_like(rows[0])], axis=1)
            x = tf.raw_ops.ImageProjectiveTransformV3(
                images=x[..., None],
                transforms=transforms,
                output_shape=[SIDE, SIDE],
                fill_value=0.0,
                interpolation="BILINEAR",
                fill_mode="CONSTANT",
            )[..., 0]
    if cfg.blur:
        sigma = tf.random.stateless_uniform([n], seeds[6], 0.0, cfg.blur)
        x = _blur(x, sigma, math.ceil(3 * cfg.blur))
    return tf.clip_by_value(x, 0.0, 1.0)


# ------------------------------------------------------------------------------------- transforms


def _dilate(x: tf.Tensor) -> tf.Tensor:
    """3x3 grey-level dilation as the maximum of shifted copies: the same as a 3x3 max pool, faster."""
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1]])
    rows = tf.maximum(tf.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    return tf.maximum(tf.maximum(rows[:, :, :-2], rows[:, :, 1:-1]), rows[:, :, 2:])


def _thickness(x: tf.Tensor, amount: tf.Tensor, levels: int) -> tf.Tensor:
    """Grow (amount > 0) or thin (< 0) each picture's strokes by |amount| pixels: whole pixels by a 3x3
    grey-level dilation or erosion, a fraction by blending the two nearest levels (tent weights, which
    give the picture itself, exactly, at amount 0)."""
    out = x * tf.nn.relu(1.0 - tf.abs(amount))[:, None, None]
    grown = thinned = x
    for level in range(1, levels + 1):
        grown, thinned = _dilate(grown), -_dilate(-thinned)
        out += grown * tf.nn.relu(1.0 - tf.abs(amount - level))[:, None, None]
        out += thinned * tf.nn.relu(1.0 - tf.abs(amount + level))[:, None, None]
    return out


Affine = tuple[tf.Tensor, tf.Tensor, tf.Tensor]  # (B,) each: a source coordinate = a*x + b*y + c


def _affine(cfg: AugmentConfig, draw: Draw) -> tuple[Affine, Affine]:
    """Where each output pixel (x, y) reads from, as (row, column) affine maps per picture: the inverse
    of a random rotation, shear and scale about the centre, then a shift."""
    angle = draw(1, math.radians(cfg.rotation))
    shear = tf.tan(draw(2, math.radians(cfg.shear)))
    scale = 1.0 + draw(3, cfg.scale)
    shift = draw(4, cfg.translate, (2,))
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # A = R(angle) @ [[1, tan(shear)], [0, 1]] / scale, acting on (x, y) about the centre
    col_x, col_y, row_x, row_y = cos, cos * shear - sin, sin, sin * shear + cos
    cols = (col_x, col_y, _CENTRE * (1.0 - col_x - col_y) - shift[:, 1])
    rows = (row_x, row_y, _CENTRE * (1.0 - row_x - row_y) - shift[:, 0])
    return rows, cols


def _sources(affine: Affine) -> tf.Tensor:
    """(B, 784): one source coordinate of every output pixel, row-major."""
    a, b, c = affine
    return a[:, None] * _GRID_X + b[:, None] * _GRID_Y + c[:, None]


def _flat(pictures: tf.Tensor) -> tf.Tensor:
    return tf.reshape(pictures, [-1, PIXELS])


def _bilinear(x: tf.Tensor, src_y: tf.Tensor, src_x: tf.Tensor) -> tf.Tensor:
    """Sample (B, 28, 28) pictures at (B, 784) positions, bilinearly, black outside the picture.

    The pictures get a black border (one pixel before, two after) and positions are clipped to [-1, 28]:
    every tap then lands inside the padded picture, and a position outside reads black exactly as an
    unclipped one would, with four gathers and no masks."""
    side = SIDE + 3
    padded = tf.reshape(tf.pad(x, [[0, 0], [1, 2], [1, 2]]), [-1, side * side])
    src_y = tf.clip_by_value(src_y, -1.0, float(SIDE))
    src_x = tf.clip_by_value(src_x, -1.0, float(SIDE))
    y0, x0 = tf.floor(src_y), tf.floor(src_x)
    fy, fx = src_y - y0, src_x - x0
    at = tf.cast((y0 + 1.0) * side + (x0 + 1.0), tf.int32)

    a, b, c, d = (tf.gather(padded, at + offset, batch_dims=1) for offset in (0, 1, side, side + 1))
    top, bottom = a + (b - a) * fx, c + (d - c) * fx
    return tf.reshape(top + (bottom - top) * fy, [-1, SIDE, SIDE])


def _gaussian_matrices(sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """(B, 28, 28) matrices K with K @ picture @ K^T = the picture blurred by its `sigma` (B,), zero
    outside it. A sigma near zero gives the identity exactly."""
    radius = min(radius, SIDE - 1)
    positions = tf.range(SIDE, dtype=tf.float32)
    distance = positions[:, None] - positions[None, :]
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    twice_var = 2.0 * tf.square(tf.maximum(sigma, 1e-3))[:, None]  # (B, 1)
    # Normalised by the whole kernel's sum: a stroke blurred at the border fades as it would on paper.
    total = tf.reduce_sum(tf.exp(-tf.square(taps)[None] / twice_var), axis=1)
    weights = tf.exp(-tf.square(distance)[None] / twice_var[:, :, None])
    weights = tf.where(tf.abs(distance)[None] <= radius, weights, 0.0)
    return weights / total[:, None, None]


def _blur(x: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """A Gaussian blur of each picture by its own `sigma` (B,): two batched 28x28 matmuls, which cost
    less here than summing shifted copies (fewer ops)."""
    return _both_axes(_gaussian_matrices(sigma, radius), x)


def _both_axes(k: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """K @ x @ K^T: a (B or 1, 28, 28) blur matrix applied down the columns and along the rows."""
    return tf.matmul(tf.matmul(k, x), k, transpose_b=True)


def _smooth(field: tf.Tensor, sigma: float) -> tf.Tensor:
    """(B, 2, 28, 28) displacement fields, each blurred by the same `sigma`."""
    k = _gaussian_matrices(tf.constant([sigma]), math.ceil(3 * sigma))  # (1, 28, 28)
    return tf.reshape(_both_axes(k, tf.reshape(field, [-1, SIDE, SIDE])), tf.shape(field))


def example_grid(images: np.ndarray, cfg: AugmentConfig, seed: int, draws: int) -> np.ndarray:
    """(N, draws, 28, 28) uint8: `draws` augmentations of each of the (N, 28, 28) uint8 `images`, as
    training would draw them (augment.png)."""
    x = tf.cast(images, tf.float32) / 255.0
    base = tf.constant([seed, -1], dtype=tf.int64)  # a stream of its own, apart from any epoch's
    out = [augment_images(x, cfg, batch_seed(base, d)).numpy() for d in range(draws)]
    return np.round(np.stack(out, axis=1) * 255).astype(np.uint8)
