"""MNIST's own stroke widths, the yardstick of `images.THICK_STROKE` and `images.THINNING`.

    python scripts/stroke_widths.py [--run RUN_DIR] [--images 3000] [--out docs/results/stroke-widths.json]

The width (`images.stroke_width`: twice the ink's area over its edge length, ink >= 128) of the first
`--images` MNIST test digits as they are (MNIST's digits are already 20 px boxes centred in 28x28): its
median and percentiles. Then the same digits through `predict`'s preparation (`images.normalize_digit`):
how many it thins, and with `--run`, how many of them the run reads right prepared with and without the
thinning, so a pen stroke's fate is on record.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

import mnist_rnn.images as images


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, help="a run directory: its reading with and without thinning")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from mnist_rnn.data import load_embedded

    arrays = load_embedded()
    digits, labels = arrays["test_images"][: args.images], arrays["test_labels"][: args.images]
    widths = np.array([images.stroke_width(d) for d in digits])
    percentiles = {str(q): float(np.percentile(widths, q)) for q in (50, 90, 95, 99)}
    prepared = np.stack([images.normalize_digit(d.astype(np.float32)) for d in digits])
    thick_stroke, images.THICK_STROKE = images.THICK_STROKE, float("inf")  # the preparation without it
    unthinned = np.stack([images.normalize_digit(d.astype(np.float32)) for d in digits])
    images.THICK_STROKE = thick_stroke
    report: dict[str, Any] = {
        "images": len(digits),
        "width_percentiles": percentiles,
        "thick_stroke": images.THICK_STROKE,
        "thinning": images.THINNING,
        "thinned": int(np.any(prepared != unthinned, axis=(1, 2)).sum()),
    }
    if args.run:
        from mnist_rnn.layouts import make_sequences
        from mnist_rnn.tf_import import import_tensorflow

        import_tensorflow()
        from mnist_rnn.trained import open_model

        model = open_model(args.run)
        predict = model.predictor()
        report["run"] = args.run.name
        for name, batch in (("correct_thinned", prepared), ("correct_unthinned", unthinned)):
            report[name] = int((predict(make_sequences(batch, model.layout)).argmax(1) == labels).sum())
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
