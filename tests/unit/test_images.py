"""MNIST-style preparation of a person's picture, step by step: polarity, noise, crop, aspect, centring."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import mnist_rnn.images
from mnist_rnn.errors import DataError
from mnist_rnn.images import (
    DIGIT_BOX,
    THICK_STROKE,
    centre_of_mass,
    erode,
    has_light_background,
    normalize_digit,
    pixel_count,
    plain_resize,
    prepare_digit,
    read_grey,
    stroke_width,
)


def _canvas(shape: tuple[int, int], box: tuple[int, int, int, int], ink: float = 255.0) -> np.ndarray:
    """A black canvas with a filled rectangle (top, left, height, width) of `ink`."""
    grey = np.zeros(shape, dtype=np.float32)
    top, left, h, w = box
    grey[top : top + h, left : left + w] = ink
    return grey


def _extent(image: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(image)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.fixture
def no_thinning(monkeypatch: pytest.MonkeyPatch) -> None:
    """A solid block is no stroke: tests of the crop and the scale keep it as it is."""
    monkeypatch.setattr(mnist_rnn.images, "THICK_STROKE", float("inf"))


@pytest.mark.usefixtures("no_thinning")
def test_the_bounding_box_is_cropped_and_its_longer_side_scaled_to_20_px() -> None:
    out = normalize_digit(_canvas((150, 90), (30, 20, 80, 40)))  # 80 tall, 40 wide, anywhere
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert _extent(out) == (DIGIT_BOX, 10)  # the aspect ratio is kept: 80x40 -> 20x10


@pytest.mark.parametrize("box", [(5, 5, 12, 60), (40, 3, 90, 7), (0, 0, 30, 30)])
def test_a_wide_a_tall_and_a_corner_digit_keep_their_aspect(box: tuple[int, int, int, int]) -> None:
    out = normalize_digit(_canvas((120, 100), box))
    h, w = box[2], box[3]
    expected = (
        (DIGIT_BOX, max(1, round(w * DIGIT_BOX / h))) if h >= w else (round(h * DIGIT_BOX / w), DIGIT_BOX)
    )
    assert _extent(out) == expected


@pytest.mark.parametrize("seed", range(5))
def test_the_centre_of_mass_lands_within_half_a_pixel_of_mnists_centre(seed: int) -> None:
    rng = np.random.default_rng(seed)
    grey = np.zeros((160, 130), dtype=np.float32)
    for _ in range(4):  # an irregular blob: strokes of different weight, off-centre
        top, left = rng.integers(10, 90, size=2)
        grey[top : top + rng.integers(5, 60), left : left + rng.integers(5, 30)] += rng.uniform(80, 255)
    out = normalize_digit(np.clip(grey, 0, 255)).astype(np.float64)
    row, col = centre_of_mass(out)
    assert abs(row - 14.0) <= 0.5 and abs(col - 14.0) <= 0.5, (row, col)


def test_both_polarities_give_the_same_image() -> None:
    light_on_dark = _canvas((100, 100), (20, 30, 60, 25))
    dark_on_light = 255.0 - light_on_dark
    assert not has_light_background(light_on_dark) and has_light_background(dark_on_light)
    np.testing.assert_array_equal(normalize_digit(light_on_dark), normalize_digit(dark_on_light))
    # an explicit override wins over the border: told "light ink", dark ink on paper reads as background
    with pytest.raises(DataError, match="blank image"):
        normalize_digit(np.full((50, 50), 250.0, dtype=np.float32), invert=False)


@pytest.mark.usefixtures("no_thinning")
def test_faint_noise_and_a_grey_background_are_not_ink() -> None:
    rng = np.random.default_rng(0)
    grey = 40.0 + rng.uniform(0, 25, size=(120, 120)).astype(np.float32)  # a noisy grey scan background
    grey[30:90, 50:70] = 230.0  # the digit
    clean = normalize_digit(_canvas((120, 120), (30, 50, 60, 20)))
    assert _extent(normalize_digit(grey)) == _extent(clean) == (20, 7)


@pytest.mark.parametrize("grey", [np.zeros((40, 40)), np.full((40, 40), 255.0), np.full((9, 9), 128.0)])
def test_a_blank_picture_is_refused(grey: np.ndarray) -> None:
    with pytest.raises(DataError, match="blank image, no digit found"):
        normalize_digit(grey.astype(np.float32), name="empty.png")


def test_plain_resize_is_the_old_whole_picture_resize() -> None:
    grey = _canvas((56, 56), (10, 10, 30, 30))
    out = plain_resize(grey)
    whole = Image.fromarray(grey.astype(np.uint8)).resize((28, 28), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(out, np.asarray(whole))  # margins kept, nothing cropped or centred
    np.testing.assert_array_equal(plain_resize(255.0 - grey), out)  # polarity told from the border


def test_read_grey_handles_files_bytes_transparency_and_junk(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # a transparent drawing: black ink, no background
    rgba.paste((0, 0, 0, 255), (10, 5, 30, 35))
    path = tmp_path / "drawing.png"
    rgba.save(path)
    grey = read_grey(path)
    assert grey.shape == (40, 40) and grey[0, 0] == 255.0 and grey[20, 20] == 0.0  # ink over white
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    np.testing.assert_array_equal(prepare_digit(buffer.getvalue(), name="upload"), prepare_digit(path))
    with pytest.raises(DataError, match="junk.png: not an image"):
        read_grey(b"not a picture", name="junk.png")


def test_pixel_count_reads_the_header_only() -> None:
    buffer = io.BytesIO()
    Image.new("L", (640, 480), 255).save(buffer, format="PNG")
    data = buffer.getvalue()
    assert pixel_count(data) == 640 * 480
    assert pixel_count(data[:64]) == 640 * 480  # the header alone: nothing past it is read
    assert pixel_count(b"not a picture") is None


def test_stroke_width_is_twice_the_area_over_the_edges() -> None:
    bar = np.zeros((220, 20), np.float32)
    bar[10:210, 8:11] = 255.0  # 3 px wide, 200 long: 2 * 600 / (2 * 200 + 2 * 3)
    assert stroke_width(bar) == pytest.approx(2 * 600 / 406)
    assert stroke_width(np.zeros((5, 5))) == 0.0


def test_erode_takes_the_minimum_over_a_square_and_black_beyond_the_edge() -> None:
    image = np.full((9, 12), 200.0, np.float32)
    image[4, 6] = 10.0
    eroded = erode(image, 3)
    assert eroded.shape == image.shape
    assert eroded[3:6, 5:8].max() == 10.0 and eroded[1, 1] == 200.0  # the dark pixel spread by one
    assert eroded[0].max() == 0.0 and eroded[:, -1].max() == 0.0  # the frame: black outside
    np.testing.assert_array_equal(erode(image, 1), image)


def _ring(stroke: int) -> np.ndarray:
    picture = Image.new("L", (240, 320), 0)
    ImageDraw.Draw(picture).ellipse((40, 40, 200, 280), outline=255, width=stroke)
    return np.asarray(picture, np.float32)


def test_a_bold_digit_is_thinned_and_a_pen_stroke_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    bold, pen = normalize_digit(_ring(55)), normalize_digit(_ring(24))
    monkeypatch.setattr(mnist_rnn.images, "THICK_STROKE", float("inf"))  # never thin
    bold_as_it_was, pen_as_it_was = normalize_digit(_ring(55)), normalize_digit(_ring(24))
    np.testing.assert_array_equal(pen, pen_as_it_was)
    assert stroke_width(bold_as_it_was) > THICK_STROKE > stroke_width(bold)
    assert (bold > 0).sum() < (bold_as_it_was > 0).sum()
    assert bold[14, 14] == 0  # the hole stays open
