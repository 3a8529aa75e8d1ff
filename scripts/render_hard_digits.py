"""Render the two hard test sets of printed digits: what MNIST's thin pen strokes never showed a model.

    python scripts/render_hard_digits.py        # rewrites tests/data/heavy/ and tests/data/blurred/

- heavy/: each digit in bold fonts, its strokes thickened further by an outline of 1-5% of the glyph's
  height (PIL's stroke_width), so that the holes of 0, 6, 8 and 9 shrink as in marker or poster type.
- blurred/: each digit in regular fonts rendered tiny (8-16 px high), scaled up 3-6x with bicubic
  interpolation, blurred (Gaussian, radius 1-3 px of the enlarged picture), with sensor noise, and saved as a
  low-quality JPEG (quality 35-75): a low-resolution scan or a photo of small print.

Canvas, position, tilt (up to 8 degrees) and polarity vary as in scripts/render_digits.py. The label is the
first character of the file name. Fonts: Debian's DejaVu, Liberation and FreeFont packages (`apt-get install
fonts-dejavu-core fonts-liberation fonts-freefont-ttf`); the files are committed, so tests need no fonts.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

TRUETYPE = Path("/usr/share/fonts/truetype")
SEED = 2026_12_04  # the committed sets
BOLD = {
    "dejavu-sans-bold": "dejavu/DejaVuSans-Bold.ttf",
    "dejavu-serif-bold": "dejavu/DejaVuSerif-Bold.ttf",
    "dejavu-mono-bold": "dejavu/DejaVuSansMono-Bold.ttf",
    "dejavu-condensed-bold": "dejavu/DejaVuSansCondensed-Bold.ttf",
    "liberation-sans-bold": "liberation/LiberationSans-Bold.ttf",
    "liberation-serif-bold": "liberation/LiberationSerif-Bold.ttf",
    "free-sans-bold": "freefont/FreeSansBold.ttf",
    "free-serif-bold": "freefont/FreeSerifBold.ttf",
    "free-mono-bold": "freefont/FreeMonoBold.ttf",
    "liberation-mono-bold": "liberation/LiberationMono-Bold.ttf",
}
REGULAR = {
    "dejavu-sans": "dejavu/DejaVuSans.ttf",
    "dejavu-serif": "dejavu/DejaVuSerif.ttf",
    "dejavu-mono": "dejavu/DejaVuSansMono.ttf",
    "liberation-sans": "liberation/LiberationSans-Regular.ttf",
    "liberation-serif": "liberation/LiberationSerif-Regular.ttf",
    "free-sans": "freefont/FreeSans.ttf",
    "free-serif": "freefont/FreeSerif.ttf",
    "free-mono": "freefont/FreeMono.ttf",
    "dejavu-sans-bold": "dejavu/DejaVuSans-Bold.ttf",
    "liberation-sans-bold": "liberation/LiberationSans-Bold.ttf",
}
OUT = Path(__file__).resolve().parents[1] / "tests" / "data"


def glyph(digit: int, font_path: Path, height: int, stroke: int, rng: np.random.Generator) -> Image.Image:
    """White `digit` on black, `height` px font size, outlined by `stroke` px, tilted, cropped to its ink."""
    font = ImageFont.truetype(str(font_path), max(6, height))
    size = 2 * height + 4 * stroke + 8
    image = Image.new("L", (size, size), 0)
    ImageDraw.Draw(image).text(
        (size // 2, size // 2), str(digit), fill=255, font=font, anchor="mm",
        stroke_width=stroke, stroke_fill=255,
    )  # fmt: skip
    image = image.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BICUBIC)
    return image.crop(image.getbbox())


def place(ink: Image.Image, rng: np.random.Generator, margin: float) -> Image.Image:
    """`ink` on a canvas `margin` times its size or more, at a random offset, half of them dark on light."""
    width = int(ink.width * rng.uniform(margin, margin * 1.8)) + 2
    height = int(ink.height * rng.uniform(margin, margin * 1.5)) + 2
    canvas = Image.new("L", (width, height), 0)
    left, top = int(rng.integers(0, width - ink.width + 1)), int(rng.integers(0, height - ink.height + 1))
    canvas.paste(ink, (left, top))
    return Image.eval(canvas, lambda v: 255 - v) if rng.random() < 0.5 else canvas


def heavy(digit: int, font_path: Path, rng: np.random.Generator) -> Image.Image:
    height = int(rng.integers(60, 160))
    stroke = max(1, round(height * rng.uniform(0.01, 0.05)))
    return place(glyph(digit, font_path, height, stroke, rng), rng, 1.2)


def blurred(digit: int, font_path: Path, rng: np.random.Generator) -> Image.Image:
    small = place(glyph(digit, font_path, int(rng.integers(8, 17)), 0, rng), rng, 1.3)
    factor = float(rng.uniform(3, 6))
    big = small.resize((round(small.width * factor), round(small.height * factor)), Image.Resampling.BICUBIC)
    big = big.filter(ImageFilter.GaussianBlur(float(rng.uniform(1, 3))))
    noisy = np.asarray(big, dtype=np.float32) + rng.normal(0, rng.uniform(2, 10), (big.height, big.width))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_set(  # noqa: ANN001
    name: str, fonts: dict[str, str], draw, per_font: int, rng: np.random.Generator, out: Path = OUT
) -> None:
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for font, path in fonts.items():
        for digit in range(10):
            for i in range(per_font):
                image = draw(digit, TRUETYPE / path, rng)
                if name == "blurred":
                    image.save(folder / f"{digit}_{font}_{i}.jpg", quality=int(rng.integers(35, 76)))
                else:
                    image.save(folder / f"{digit}_{font}_{i}.png")
    print(f"wrote {len(fonts) * 10 * per_font} pictures to {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-font", type=int, default=2, help="pictures of each digit per font [2]")
    parser.add_argument(
        "--seed", type=int, default=SEED, help="another seed and --out: fresh sets, held out from tuning"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder for heavy/ and blurred/ [{OUT}]")
    args = parser.parse_args()
    missing = [p for p in {**BOLD, **REGULAR}.values() if not (TRUETYPE / p).is_file()]
    if missing:
        raise SystemExit(f"fonts not found: {', '.join(missing)}; see this script's docstring")
    rng = np.random.default_rng(args.seed)
    write_set("heavy", BOLD, heavy, args.per_font, rng, args.out)
    write_set("blurred", REGULAR, blurred, args.per_font, rng, args.out)


if __name__ == "__main__":
    main()
