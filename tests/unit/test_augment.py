"""data.augment: zero strength is no augmentation, each transform does what it says, draws are a function
of (seed, epoch, batch) alone, and bad ranges are one-line config errors naming the key."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_rnn.augment import augment_images, augmented_batches, batch_seed, example_grid
from mnist_rnn.config import AugmentConfig, Layout
from mnist_rnn.config_files import load_config
from mnist_rnn.data import load_embedded
from mnist_rnn.errors import ConfigError
from mnist_rnn.layouts import make_sequences, permutation, pixel_index, to_model_order
from tests.conftest import CONFIGS

EVERYTHING = AugmentConfig(
    rotation=15, translate=2, scale=0.1, shear=10, elastic_alpha=30, thickness=1, blur=1
)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    arrays = load_embedded()
    return arrays["train_images"][:300], arrays["train_labels"][:300].astype(np.int32)


def _epoch(
    images: np.ndarray, labels: np.ndarray, cfg: AugmentConfig, layout: Layout = Layout.rows,
    key: tuple[int, int, int] = (3, 0, 0), order: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    batches = augmented_batches(images, labels, 64, cfg, pixel_index(layout, order), key)
    return np.concatenate([x.numpy() for x, _ in batches])


def _pictures(images: np.ndarray, cfg: AugmentConfig, step: int = 0) -> np.ndarray:
    import tensorflow as tf

    x = tf.constant(images.astype(np.float32) / 255.0)
    return augment_images(x, cfg, batch_seed(tf.constant([5, 0], tf.int64), step)).numpy()


@pytest.mark.parametrize("layout", list(Layout))
def test_zero_strength_gives_exactly_the_plain_sequences_in_every_layout(digits, layout: Layout) -> None:
    images, labels = digits
    order = permutation(0) if layout is Layout.permuted_pixels else None
    plain = to_model_order(make_sequences(images, layout), order)
    np.testing.assert_array_equal(_epoch(images, labels, AugmentConfig(), layout, order=order), plain)
    augmented = _epoch(images, labels, EVERYTHING, layout, order=order)
    assert augmented.shape == plain.shape and np.abs(augmented - plain).mean() > 0.02


def test_batches_depend_on_seed_epoch_and_batch_alone(digits) -> None:
    images, labels = digits
    whole = _epoch(images, labels, EVERYTHING, key=(3, 2, 0))
    np.testing.assert_array_equal(_epoch(images, labels, EVERYTHING, key=(3, 2, 0)), whole)
    # A run resumed at batch 2 of the epoch gets the batches an uninterrupted one got from there on.
    np.testing.assert_array_equal(_epoch(images[128:], labels[128:], EVERYTHING, key=(3, 2, 2)), whole[128:])
    assert not np.array_equal(_epoch(images, labels, EVERYTHING, key=(3, 3, 0)), whole)  # next epoch
    assert not np.array_equal(_epoch(images, labels, EVERYTHING, key=(4, 2, 0)), whole)  # another seed
    assert not np.array_equal(whole[:64], whole[64:128])  # each batch draws its own


def test_translation_moves_ink_without_losing_it(digits) -> None:
    frame = np.ones((28, 28), bool)
    frame[4:-4, 4:-4] = False
    images = digits[0][~np.any(digits[0] * frame, axis=(1, 2))][:64]  # a blank border wider than the shift
    assert len(images) == 64
    out = _pictures(images, AugmentConfig(translate=3))
    before, after = images.reshape(64, -1).sum(1) / 255.0, out.reshape(64, -1).sum(1)
    np.testing.assert_allclose(after, before, rtol=1e-4)
    rows = np.arange(28, dtype=np.float32)

    def centre(pictures: np.ndarray) -> np.ndarray:
        mass = pictures.sum(axis=2)  # (N, 28) ink per row
        return (mass * rows).sum(1) / mass.sum(1)

    moved = np.abs(centre(out) - centre(images.astype(np.float32)))
    assert moved.max() <= 3.0 + 1e-3 and moved.mean() > 0.5


def test_thickness_grows_or_thins_each_digit_and_blur_spreads_it(digits) -> None:
    images = digits[0][:64]
    plain = images.astype(np.float32) / 255.0
    out = _pictures(images, AugmentConfig(thickness=1.5))
    grown = np.all(out >= plain - 1e-6, axis=(1, 2))
    thinned = np.all(out <= plain + 1e-6, axis=(1, 2))
    assert np.all(grown | thinned) and grown.any() and thinned.any()
    blurred = _pictures(images, AugmentConfig(blur=2.0))
    assert np.all(blurred.max(axis=(1, 2)) <= plain.max(axis=(1, 2)) + 1e-6)
    inked = lambda pictures: (pictures > 0.05).sum(axis=(1, 2))  # noqa: E731
    assert inked(blurred).mean() > inked(plain).mean()


def test_every_transform_alone_changes_the_pictures_and_stays_in_range(digits) -> None:
    images = digits[0][:32]
    plain = images.astype(np.float32) / 255.0
    for key in ("rotation", "translate", "scale", "shear", "elastic_alpha", "thickness", "blur"):
        value = {"rotation": 20.0, "translate": 2.0, "scale": 0.2, "shear": 15.0, "elastic_alpha": 30.0,
                 "thickness": 1.0, "blur": 1.5}[key]  # fmt: skip
        out = _pictures(images, AugmentConfig(**{key: value}))
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert np.abs(out - plain).mean() > 0.01, key


def test_the_resampling_kernel_and_the_elastic_gathers_agree_on_the_same_geometry(digits) -> None:
    """Without an elastic field the geometry runs on TensorFlow's transform kernel; with one, on gathers.
    A vanishing field must give the kernel's picture: the two read the same affine map the same way."""
    geometry = {"rotation": 20.0, "translate": 3.0, "scale": 0.2, "shear": 15.0}
    kernel = _pictures(digits[0][:32], AugmentConfig(**geometry))
    gathers = _pictures(digits[0][:32], AugmentConfig(**geometry, elastic_alpha=1e-6))
    assert np.abs(kernel - digits[0][:32] / 255.0).mean() > 0.02
    np.testing.assert_allclose(gathers, kernel, atol=1e-4)


def test_example_grid_draws_augmentations_of_each_digit(digits) -> None:
    grid = example_grid(digits[0][:4], EVERYTHING, seed=1, draws=3)
    assert grid.shape == (4, 3, 28, 28) and grid.dtype == np.uint8
    assert not np.array_equal(grid[:, 0], grid[:, 1])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.augment.rotation=-5", "data.augment.rotation: must be greater than or equal to 0, got -5"),
        ("data.augment.scale=1.5", "data.augment.scale: must be less than 1, got 1.5"),
        ("data.augment.blurr=1", "data.augment.blurr: unknown key; did you mean 'blur'?"),
        ("data.augment.elastic_sigma=0", "data.augment.elastic_sigma: must be greater than 0"),
    ],
)
def test_a_bad_range_is_a_one_line_error_naming_the_key(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(CONFIGS / "default.yaml", [override])
    message = str(caught.value)
    assert expected in message and "\n" not in message


def test_one_key_set_on_the_command_line_turns_augmentation_on() -> None:
    assert load_config(CONFIGS / "smoke.yaml").data.augment is None
    cfg = load_config(CONFIGS / "smoke.yaml", ["data.augment.rotation=5"])
    assert cfg.data.augment == AugmentConfig(rotation=5)


def test_augmenting_chunks_of_a_sequence_is_refused() -> None:
    overrides = ["train.stateful=true", "data.chunk_steps=7", "data.augment.rotation=5"]
    with pytest.raises(ConfigError, match="data.augment"):
        load_config(CONFIGS / "default.yaml", overrides)
