"""How many of the printed test digits (tests/data/digits/) a run classifies, through `mnist-rnn predict`'s
own code path, with MNIST-style normalisation and with the plain resize it replaced.

    python scripts/digits_accuracy.py RUN_DIR [--digits tests/data/digits]

The label of a picture is the first character of its file name. Prints one Markdown row per
preprocessing: correct of total, overall and by polarity (light ink on dark, dark ink on light).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--digits", type=Path, default=REPO / "tests" / "data" / "digits")
    args = parser.parse_args()

    from mnist_rnn.images import has_light_background, read_grey
    from mnist_rnn.predict import predict_files
    from mnist_rnn.tf_import import import_tensorflow

    import_tensorflow()
    files = sorted(p for p in args.digits.iterdir() if p.suffix in (".png", ".jpg"))
    labels = np.array([int(p.name[0]) for p in files])
    light = np.array([has_light_background(read_grey(p)) for p in files])
    print(f"{len(files)} pictures in {args.digits}, run {args.run}")
    print("| preprocessing | correct | light ink on dark | dark ink on light |\n|---|---|---|---|")
    rows = (
        ("MNIST-style normalisation, no flags (the default)", {}),
        ("the old preprocessing: plain resize, `--invert` given for the dark-on-light ones",
         {"normalize": False, "per_file_invert": True}),
    )  # fmt: skip
    for name, options in rows:
        if options.pop("per_file_invert", False):  # the old way: the user passes --invert for dark-on-light
            got = np.empty(len(files), dtype=int)
            for flag in (False, True):
                chosen = [f for f, is_light in zip(files, light, strict=True) if is_light == flag]
                predictions, _, _ = predict_files(args.run, chosen, invert=flag, normalize=False)
                got[light == flag] = [p.label for p in predictions]
        else:
            predictions, errors, _ = predict_files(args.run, files, invert=None, **options)
            assert not errors, errors
            got = np.array([p.label for p in predictions])
        ok = got == labels
        print(
            f"| {name} | {ok.sum()}/{len(ok)} ({ok.mean():.1%}) | {ok[~light].sum()}/{(~light).sum()} "
            f"| {ok[light].sum()}/{light.sum()} |"
        )


if __name__ == "__main__":
    main()
