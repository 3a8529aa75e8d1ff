"""`mnist-rnn eval`, `export` and `predict`: read a run (or an export) and score, ship or classify."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from mnist_rnn.artefacts import ExportFormat
from mnist_rnn.cli.app import (
    CheckpointName,
    CheckpointOpt,
    SplitName,
    app,
    err_console,
    exit_code,
    out_console,
    run,
    state,
)
from mnist_rnn.tables import eval_tables, export_table, predictions_table
from mnist_rnn.tf_import import import_tensorflow

# ------------------------------------------------------------------------------------------- eval


def _eval(
    run_path: Path, checkpoint: CheckpointName | None, split: SplitName, explain: int
) -> dict[str, Any]:
    import_tensorflow(state["debug"])
    from mnist_rnn import runs
    from mnist_rnn.evaluate import evaluate_run

    run_dir, chosen = runs.resolve_run_dir(run_path, checkpoint.value if checkpoint else None)
    return evaluate_run(run_dir, chosen, split.value, explain)


@app.command(
    "eval",
    epilog=(
        "Examples:\n\n"
        "  mnist-rnn eval runs/20260101-120000-default\n\n"
        "  mnist-rnn eval runs/try1 --checkpoint last --split val\n\n"
        "  mnist-rnn eval runs/try1 --explain 6\n\n"
        "  mnist-rnn eval runs/try1/checkpoints/best"
    ),
)
def eval_command(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory, or one of its checkpoints/<name> folders.")
    ],
    checkpoint: CheckpointOpt = None,
    split: Annotated[SplitName, typer.Option("--split", help="Which split to score.")] = SplitName.test,
    explain: Annotated[
        int,
        typer.Option(
            "--explain",
            min=0,
            max=32,
            help="Also draw explain.png: this many digits and the class probabilities after each row read.",
        ),
    ] = 0,
) -> None:
    """Score a run's checkpoint: loss, accuracy, per-class accuracy and the confusion matrix.

    Writes `RUN_DIR/eval.json`, `confusion_matrix.png`, `errors.png` (the most confidently wrong digits)
    and, with `--explain N`, `explain.png`: how the prediction forms as the network reads N digits.
    """
    report = run(_eval, run_dir, checkpoint, split, explain)
    for table in eval_tables(report):
        out_console.print(table)
    for picture in report["pictures"]:
        err_console.print(f"wrote {picture}", highlight=False, markup=False)


# ----------------------------------------------------------------------------------------- export


class QuantizeName(StrEnum):
    dynamic = "dynamic"


def _export(
    run_path: Path,
    fmt: ExportFormat,
    checkpoint: CheckpointName | None,
    out: Path | None,
    quantize: QuantizeName | None,
) -> dict[str, Any]:
    import_tensorflow(state["debug"])
    from mnist_rnn import runs
    from mnist_rnn.export import export_run

    run_dir, chosen = runs.resolve_run_dir(run_path, checkpoint.value if checkpoint else None)

    def log(message: str) -> None:
        err_console.print(message, highlight=False, markup=False)

    return export_run(run_dir, fmt.value, chosen, out, quantize.value if quantize else None, log=log)


@app.command(
    "export",
    epilog=(
        "Examples:\n\n"
        "  mnist-rnn export runs/try1 --format saved_model\n\n"
        "  mnist-rnn export runs/try1 --format tflite --quantize dynamic\n\n"
        "  mnist-rnn export runs/try1 --format onnx --checkpoint last --out /tmp/serve"
    ),
)
def export_command(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory (or one of its checkpoints/<name> folders).")
    ],
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="What to write.")],
    checkpoint: CheckpointOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Target folder [default: RUN_DIR/export/FORMAT].")
    ] = None,
    quantize: Annotated[
        QuantizeName | None, typer.Option("--quantize", help="tflite only: dynamic-range int8 weights.")
    ] = None,
) -> None:
    """Write a servable artefact and verify it against the trained model in its own runtime.

    Checks max |Δprob| on 1,000 test images (≤ 1e-5 for saved_model, keras, onnx; ≤ 1e-4 for tflite; the
    same class on ≥ 99.9% for quantized tflite) and reports the artefact's test accuracy; exits 1 with the
    figures if a bound is broken. Writes manifest.json beside the artefact; prints the folder on stdout.
    """
    manifest = run(_export, run_dir, fmt, checkpoint, out, quantize)
    err_console.print(export_table(manifest))
    out_console.print(manifest["path"], highlight=False, markup=False)


# ---------------------------------------------------------------------------------------- predict


def _predict(source: Path, images: list[Path], invert: bool | None, normalize: bool) -> Any:
    import_tensorflow(state["debug"])
    from mnist_rnn.predict import predict_files

    return predict_files(source, images, invert, normalize)


@app.command(
    "predict",
    epilog=(
        "Examples:\n\n"
        "  mnist-rnn predict runs/try1 digit.png scan.jpg\n\n"
        "  mnist-rnn predict runs/try1 faint-scan.png --invert\n\n"
        "  mnist-rnn predict runs/try1/export/tflite t10k-images-idx3-ubyte.gz --json"
    ),
)
def predict_command(
    source: Annotated[Path, typer.Argument(help="A run directory (best checkpoint) or an export folder.")],
    images: Annotated[list[Path], typer.Argument(help="PNG/JPEG/... images (any size) or IDX image files.")],
    invert: Annotated[
        bool | None,
        typer.Option(
            "--invert/--no-invert",
            help="Override the polarity told from the picture's border: --invert for dark ink on light "
            "paper, --no-invert for light ink on dark.",
            show_default=False,
        ),
    ] = None,
    normalize: Annotated[
        bool,
        typer.Option(
            "--normalize/--no-normalize",
            help="Prepare pictures as MNIST's digits were (crop, 20 px box, centre of mass); "
            "--no-normalize resizes the whole picture to 28x28, for inputs that are already MNIST-like.",
        ),
    ] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Classify image files with the same preprocessing as training.

    A picture is prepared as MNIST's digits were: which way round it is (from its border), faint noise
    dropped, the digit cropped and scaled to a 20 px box keeping its shape, and centred by mass in 28x28.
    IDX files are MNIST already and are read as they are. An unreadable file gets a one-line error on
    stderr; the others are still classified, and the exit code is then 2.
    """
    import json as json_module

    from mnist_rnn.predict import as_json

    predictions, errors, described = run(_predict, source, images, invert, normalize)
    for error in errors:
        err_console.print(f"error: {error}", markup=False, highlight=False, style="red")
    if json_out:
        sys.stdout.write(json_module.dumps(as_json(predictions, errors), indent=2) + "\n")
    elif predictions:
        out_console.print(predictions_table(predictions, described))
    if errors:
        raise typer.Exit(max(exit_code(error) for error in errors))
