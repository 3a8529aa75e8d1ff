"""A person's picture of a digit -> a 28x28 MNIST-style image: white digit on black, its longer side
20 px, its centre of mass at the centre of the frame.

That is how MNIST's digits were made (LeCun et al.: each digit size-normalised to a 20x20 box keeping its
aspect ratio, anti-aliased, then placed in a 28x28 field so that its centre of mass sits at the centre). A
model trained on MNIST recognises digits prepared that way; a plain resize of a photo or a drawing keeps its
margins and stretches it. MNIST's strokes are a pen's, so a bold or marker digit is thinned towards them
(THICK_STROKE, THINNING). Every command that takes a person's picture (`predict`, `serve`) goes through
`prepare_digit`. Resampling is Pillow's (Lanczos); the rest is array arithmetic.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from mnist_rnn.errors import DataError, ImageTooLarge
from mnist_rnn.mnist import IMAGE_SHAPE

DIGIT_BOX = 20  # MNIST: the longer side of the digit's bounding box, in pixels
NOISE_FRACTION = 0.2  # ink fainter than this share of the strongest ink is background noise
MIN_CONTRAST = 32.0  # below this (0..255) between ink and background, there is no digit to read
# A picture is refused from its header above this many pixels, before it is decoded: a 200 KB PNG can
# decode to 13,300 x 13,300 pixels and several GB. A 40 Mpx phone photo still passes.
MAX_PIXELS = 40_000_000
DRAFT_SIDE = 1024  # JPEGs are decoded at a reduced scale down to this size; the digit ends at 20 px
# Bold print and marker strokes: a digit whose strokes, prepared, are wider than THICK_STROKE pixels (2 x ink
# area / edge length, at 28x28) is thinned by THINNING pixels and prepared again. MNIST's own digits measure
# 1.84 px (median of the first 3,000 test digits) and 3.44 px at the 99th percentile, so the bound is
# about MNIST's widest, and the thinning about the gap between its widest and its median. Measured with the
# default model (docs/results.md): heavy fonts 93.5% -> 97.0%, the printed and blurred sets unchanged.
THICK_STROKE = 3.5
THINNING = 1.5


def read_grey(source: Path | bytes, name: str | None = None) -> np.ndarray:
    """A PNG/JPEG/... file or its bytes -> (H, W) float32 greyscale in [0, 255]. Pillow reads the size
    from the header first: a picture over `MAX_PIXELS` is an `ImageTooLarge` before anything is decoded."""
    from PIL import Image, UnidentifiedImageError

    shown = name or str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise ImageTooLarge(
                    f"{shown}: {width}x{height} pixels is over the limit of {MAX_PIXELS / 1e6:g} Mpx; "
                    "scale the picture down (a digit needs a few hundred pixels a side)"
                )
            opened.draft("L", (DRAFT_SIDE, DRAFT_SIDE))  # JPEG: decode at a reduced scale; others: no-op
            opened.load()
            image = opened.convert("RGBA") if _has_alpha(opened) else opened
            if image.mode == "RGBA":  # transparent background: what a viewer shows is the ink over white
                image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
            grey = np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.float32)
    except UnidentifiedImageError:
        raise DataError(f"{shown}: not an image (PNG, JPEG, ...) or IDX file") from None
    except Image.DecompressionBombError as exc:  # Pillow's own bound, checked at open
        raise ImageTooLarge(f"{shown}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{shown}: cannot read the image ({exc})") from None
    return grey


def pixel_count(data: bytes) -> int | None:
    """Width x height from the picture's header, nothing decoded (None: not a picture Pillow knows)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
    except Exception:  # whatever it is, read_grey says it in its own words
        return None
    return int(width * height)


def _has_alpha(image: Any) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def border(grey: np.ndarray) -> np.ndarray:
    """The pixels of the picture's outer frame (about 5% of each side, at least one pixel)."""
    h, w = grey.shape
    dy, dx = max(1, h // 20), max(1, w // 20)
    return np.concatenate(
        [grey[:dy].ravel(), grey[-dy:].ravel(), grey[:, :dx].ravel(), grey[:, -dx:].ravel()]
    )


LIGHT_BORDER = 127.5  # a border median above this: dark ink on a light background


def has_light_background(grey: np.ndarray) -> bool:
    """Dark ink on a light background (paper, a scan) rather than MNIST's light ink on black."""
    return bool(np.median(border(grey)) > LIGHT_BORDER)


def normalize_digit(grey: np.ndarray, invert: bool | None = None, name: str = "image") -> np.ndarray:
    """(H, W) greyscale -> (28, 28) uint8, MNIST-style. `invert` None: tell the polarity from the border."""
    # One median of the border serves both the polarity and the background's level (the median of
    # 255 - x is 255 - the median of x): this runs once per request in `serve`, in its event loop.
    edge = float(np.median(border(grey)))
    flip = edge > LIGHT_BORDER if invert is None else invert  # has_light_background's test
    ink = 255.0 - grey if flip else grey.copy()
    ink -= 255.0 - edge if flip else edge  # the background's own level is not ink
    np.maximum(ink, 0.0, out=ink)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise DataError(f"{name}: blank image, no digit found (contrast {peak:.0f} of 255); draw a digit")
    ink[ink < NOISE_FRACTION * peak] = 0.0
    box = _crop(ink) * (255.0 / peak)
    digit = centre_by_mass(scale_to_box(box))
    if stroke_width(digit) > THICK_STROKE:
        # the same thinning at the picture's own resolution: the box's longer side becomes DIGIT_BOX pixels
        thinner = erode(box, 2 * round(THINNING * max(box.shape) / DIGIT_BOX / 2) + 1)
        if thinner.max() >= MIN_CONTRAST:
            digit = centre_by_mass(scale_to_box(_crop(thinner)))
    return digit


def _crop(ink: np.ndarray) -> np.ndarray:
    """The bounding box of the non-zero pixels."""
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def stroke_width(image: np.ndarray, level: float = 128.0) -> float:
    """The mean width of the strokes in pixels: twice the ink's area over the length of its edges (a
    stroke of width w and length l has area w*l and two edges of length l), the ink being >= `level`."""
    ink = image >= level
    edges = int(np.count_nonzero(ink[1:] != ink[:-1]) + np.count_nonzero(ink[:, 1:] != ink[:, :-1]))
    return 2.0 * int(np.count_nonzero(ink)) / max(edges, 1)


def erode(image: np.ndarray, size: int) -> np.ndarray:
    """Grey erosion by a `size` x `size` square (the minimum over it; outside the picture is black)."""
    half = size // 2
    padded = np.pad(image, half)
    return _running_min(_running_min(padded, size, axis=0), size, axis=1)


def _running_min(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    """The minimum of every `size` consecutive values along `axis` (the valid windows only), in log2(size)
    passes rather than `size`: a window twice as long is the minimum of two windows side by side, and the
    last step joins two overlapping windows. A 3,000-pixel photo of a bold digit needs windows of ~200."""
    out, span = np.moveaxis(a, axis, 0), 1
    while span * 2 <= size:
        out, span = np.minimum(out[:-span], out[span:]), span * 2
    if span < size:
        rest = size - span
        out = np.minimum(out[:-rest], out[rest:])
    return np.moveaxis(out, 0, axis)


def scale_to_box(box: np.ndarray, side: int = DIGIT_BOX) -> np.ndarray:
    """Scale so the longer side is `side` px, keeping the aspect ratio (Pillow's Lanczos, anti-aliased)."""
    from PIL import Image

    h, w = box.shape
    factor = side / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))  # Pillow takes (width, height)
    scaled = Image.fromarray(box.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)  # mode F
    return np.clip(np.asarray(scaled, dtype=np.float32), 0.0, 255.0)


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) of the intensity-weighted mean pixel position."""
    total = float(image.sum())
    rows, cols = np.indices(image.shape)
    return float((rows * image).sum() / total), float((cols * image).sum() / total)


def centre_by_mass(digit: np.ndarray, frame: tuple[int, int] = IMAGE_SHAPE) -> np.ndarray:
    """Place `digit` in a black frame, shifted by whole pixels so its centre of mass lands within half a
    pixel of (14, 14), where MNIST's own digits have theirs (the mean over the first 5,000 training digits
    is (13.99, 14.00), sd 0.29); what would fall outside the frame is cut."""
    com_row, com_col = centre_of_mass(digit)
    top = round(frame[0] / 2 - com_row)
    left = round(frame[1] / 2 - com_col)
    out = np.zeros(frame, dtype=np.float32)
    h, w = digit.shape
    r0, c0 = max(0, top), max(0, left)
    r1, c1 = min(frame[0], top + h), min(frame[1], left + w)
    out[r0:r1, c0:c1] = digit[r0 - top : r1 - top, c0 - left : c1 - left]
    return np.round(out).astype(np.uint8)


def plain_resize(grey: np.ndarray, invert: bool | None = None) -> np.ndarray:
    """The whole picture resized to 28x28 (for inputs that are already MNIST-like): no crop, no centring."""
    from PIL import Image

    flip = has_light_background(grey) if invert is None else invert
    image = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8))  # mode L
    pixels = np.asarray(image.resize(IMAGE_SHAPE[::-1], Image.Resampling.LANCZOS), dtype=np.uint8)
    return 255 - pixels if flip else pixels


def prepare_digit(
    source: Path | bytes, invert: bool | None = None, normalize: bool = True, name: str | None = None
) -> np.ndarray:
    """A picture file (or its bytes) -> the (28, 28) uint8 image a model reads."""
    grey = read_grey(source, name)
    shown = name or str(source)
    return normalize_digit(grey, invert, shown) if normalize else plain_resize(grey, invert)
