"""How many pictures of each hard set trained runs read correctly, through `mnist-rnn predict`'s own path
(no flags: MNIST-style normalisation, polarity detected).

    python scripts/robustness.py default=runs/default row_best=runs/row_best \\
        --out docs/results/robustness.json [--set heavy_heldout=FOLDER ...]

Sets (the label is the first character of each file name): tests/data/digits (printed, rendered by
scripts/render_digits.py), tests/data/heavy and tests/data/blurred (scripts/render_hard_digits.py). The
JSON holds, per run, each set's correct / total and accuracy, with the run's config name and test accuracy
and the machine, for docs/results.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SETS = {name: REPO / "tests" / "data" / name for name in ("digits", "heavy", "blurred")}


def score(run: Path, folder: Path) -> dict[str, Any]:
    from mnist_rnn.predict import predict_files

    files = sorted(p for p in folder.iterdir() if p.suffix in (".png", ".jpg"))
    predictions, errors, _ = predict_files(run, files, invert=None)
    if errors:
        raise SystemExit(f"{folder}: {len(errors)} pictures could not be read: {errors[0]}")
    correct = sum(int(p.label == int(f.name[0])) for p, f in zip(predictions, files, strict=True))
    return {"correct": correct, "total": len(files), "accuracy": correct / len(files)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    parser.add_argument("--out", type=Path, default=Path("robustness.json"))
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=FOLDER", dest="extra",
        help="another set too, e.g. one rendered with another seed and held out from tuning",
    )  # fmt: skip
    args = parser.parse_args()
    sets = {**SETS, **{name: Path(folder) for name, _, folder in (s.partition("=") for s in args.extra)}}

    from mnist_rnn import runs
    from mnist_rnn.execution import cpu_description
    from mnist_rnn.tf_import import import_tensorflow

    import_tensorflow()
    report: dict[str, Any] = {"machine": {"cpu": cpu_description()}, "runs": {}}
    for item in args.runs:
        label, _, path = item.partition("=")
        run = Path(path)
        metrics = runs.read_json(run / runs.METRICS)
        entry = {
            "config": runs.read_run_config(run).name,
            "test_accuracy": metrics["test_accuracy"],
            "sets": {name: score(run, folder) for name, folder in sets.items()},
        }
        report["runs"][label] = entry
        shown = ", ".join(f"{name} {s['correct']}/{s['total']}" for name, s in entry["sets"].items())
        print(f"{label} ({run}): {shown}", flush=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
