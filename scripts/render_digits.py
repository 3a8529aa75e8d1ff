"""Render the printed-digit test set in tests/data/digits/: what a person feeds `mnist-rnn predict`.

    python scripts/render_digits.py            # rewrites tests/data/digits/ (deterministic)

Each digit 0-9 in every font found below, twice: on a canvas of 28 to 200 px (often not square), at a
random size and offset, tilted by up to 10 degrees, white on black or black on white, a fifth of them
saved as JPEG. The label is the first character of the file name. Fonts are Debian's DejaVu, Liberation
and FreeFont packages (`apt-get install fonts-dejavu-core fonts-liberation fonts-freefont-ttf`); the
rendered files are committed, so tests need none of them.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONTS = {
    "dejavu-sans": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "dejavu-sans-bold": "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "dejavu-serif": "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "dejavu-serif-italic": "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Italic.ttf",
    "dejavu-mono": "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "dejavu-condensed": "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf",
    "liberation-sans": "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "liberation-serif": "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
    "liberation-mono": "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
    "free-sans-bold": "/usr/share/fonts/truetype/freefont/FreeSansBold.ttf",
    "free-serif": "/usr/share/fonts/truetype/freefont/FreeSerif.ttf",
    "free-mono-bold": "/usr/share/fonts/truetype/freefont/FreeMonoBold.ttf",
}
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "digits"


def render(digit: int, font_path: str, rng: np.random.Generator) -> tuple[Image.Image, bool]:
    """One picture of `digit`; returns it and whether it is saved as JPEG."""
    width, height = (int(v) for v in rng.integers(28, 201, size=2))
    if rng.random() < 0.5:  # half of them square
        width = height
    glyph_px = int(min(width, height) * rng.uniform(0.55, 0.9))
    font = ImageFont.truetype(font_path, max(8, glyph_px))
    glyph = Image.new("L", (glyph_px * 2, glyph_px * 2), 0)
    ImageDraw.Draw(glyph).text((glyph_px, glyph_px), str(digit), fill=255, font=font, anchor="mm")
    glyph = glyph.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BICUBIC)
    glyph = glyph.crop(glyph.getbbox())
    scale = min(1.0, 0.95 * width / glyph.width, 0.95 * height / glyph.height)  # keep it on the canvas
    if scale < 1.0:
        glyph = glyph.resize((max(1, int(glyph.width * scale)), max(1, int(glyph.height * scale))))
    canvas = Image.new("L", (width, height), 0)
    left = int(rng.integers(0, width - glyph.width + 1))
    top = int(rng.integers(0, height - glyph.height + 1))
    canvas.paste(glyph, (left, top))
    if rng.random() < 0.5:  # dark ink on light paper
        canvas = Image.eval(canvas, lambda v: 255 - v)
    return canvas, bool(rng.random() < 0.2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--per-font", type=int, default=2, help="pictures of each digit per font")
    args = parser.parse_args()
    missing = [path for path in FONTS.values() if not Path(path).is_file()]
    if missing:
        raise SystemExit(f"fonts not found: {', '.join(missing)}; see this script's docstring")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    rng = np.random.default_rng(2026)
    for name, path in FONTS.items():
        for digit in range(10):
            for i in range(args.per_font):
                image, jpeg = render(digit, path, rng)
                target = args.out / f"{digit}_{name}_{i}.{'jpg' if jpeg else 'png'}"
                if jpeg:
                    image.save(target, quality=90)
                else:
                    image.save(target, optimize=True)
    files = list(args.out.iterdir())
    print(
        f"wrote {len(files)} pictures ({sum(f.stat().st_size for f in files) / 1024:.0f} KiB) to {args.out}"
    )


if __name__ == "__main__":
    main()
