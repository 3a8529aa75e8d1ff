"""The `mnist-rnn` command line: parse, load the config, call one function, map errors to exit codes.

TensorFlow is imported inside the commands that need it, so `--help`, `--version`, `config ...` and
config errors answer without paying for it.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from mnist_rnn import __version__
from mnist_rnn.errors import ConfigError, MnistRnnError
from mnist_rnn.tf_import import import_tensorflow

# Progress and logs go to stderr; stdout carries only what a script wants (run dir, YAML, tables).
err_console = Console(stderr=True, soft_wrap=True)
out_console = Console(soft_wrap=True)

EXIT_RUNTIME, EXIT_USAGE, EXIT_SIGINT = 1, 2, 130

app = typer.Typer(
    name="mnist-rnn",
    help="Train, evaluate and ship recurrent networks (LSTM/GRU) on MNIST read as sequences.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
)
config_app = typer.Typer(help="Show or check a configuration without training.", no_args_is_help=True)
app.add_typer(config_app, name="config")

_state = {"debug": False}


class CheckpointName(StrEnum):
    best = "best"
    last = "last"


class SplitName(StrEnum):
    test = "test"
    val = "val"


def _fail(exc: BaseException, code: int) -> NoReturn:
    if _state["debug"]:
        raise exc
    err_console.print(f"error: {exc}", markup=False, highlight=False, style="red")
    raise typer.Exit(code)


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call fn; turn domain errors into one line and an exit code (a traceback only with --debug)."""
    try:
        return fn(*args, **kwargs)
    except MnistRnnError as exc:
        _fail(exc, exc.exit_code)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside training
        err_console.print("aborted (Ctrl-C); checkpoints of finished epochs are kept", style="yellow")
        raise typer.Exit(EXIT_SIGINT) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # an unexpected failure: still one line, and the way to see more
        if _state["debug"]:
            raise
        err_console.print(
            f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            markup=False,
            highlight=False,
            style="red",
        )
        raise typer.Exit(EXIT_RUNTIME) from None


def _version(value: bool) -> None:
    if value:
        out_console.print(f"mnist-rnn {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """Train, evaluate and ship recurrent networks (LSTM/GRU) on MNIST read as sequences.

    Exit codes: 0 success, 1 runtime failure, 2 bad usage or input, 130 interrupted.
    """
    _state["debug"] = debug


CheckpointOpt = Annotated[
    CheckpointName | None, typer.Option("--checkpoint", help="Which checkpoint [default: best].")
]
ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="YAML config file (may name a `base:` file).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a key, value parsed as YAML: `--set model.units=[256,256]`."),
]


def _load(config: Path, overrides: list[str] | None, name: str | None = None) -> Any:
    from mnist_rnn.config import load_config

    items = list(overrides or [])
    if name is not None:
        items.append(f"name={name}")
    return load_config(config, items)


# ------------------------------------------------------------------------------------------ train


def _resume_config(run_dir: Path, config: Path | None, overrides: list[str] | None) -> Any:
    """The run's saved config, with --config/--set applied; anything but train.epochs may not change."""
    from mnist_rnn import runs
    from mnist_rnn.config import config_diff

    saved = runs.read_run_config(run_dir)
    cfg = _load(config or run_dir / runs.CONFIG, overrides)
    changed = [key for key in config_diff(saved, cfg) if key != "train.epochs"]
    if changed:
        raise ConfigError(
            f"--resume {run_dir}: the config differs from the run's saved config in {', '.join(changed)}; "
            "only train.epochs may change when resuming (start a new run for the rest)"
        )
    state = runs.read_checkpoint_state(run_dir, "last")
    if state.get("epoch", 0) >= cfg.train.epochs:
        raise ConfigError(
            f"--resume {run_dir}: the run already finished {state['epoch']} of {cfg.train.epochs} epochs; "
            "raise train.epochs (e.g. --set train.epochs=" + str(state["epoch"] + 5) + ") to train longer"
        )
    return cfg


def _train(
    config: Path | None,
    overrides: list[str] | None,
    run_dir: Path | None,
    name: str | None,
    resume: Path | None,
) -> Path:
    from mnist_rnn import runs

    if resume is not None:
        if run_dir is not None or name is not None:
            raise ConfigError("--resume continues the given run; drop --run-dir and --name")
        target, _ = runs.resolve_run_dir(resume)
        cfg = _resume_config(target, config, overrides)
    elif config is None:
        raise ConfigError("train needs --config FILE (or --resume RUN_DIR); see mnist-rnn train --help")
    else:
        cfg = _load(config, overrides, name)
    if resume is None:
        target = runs.plan_run_dir(cfg.run.root, cfg.name, run_dir)

    import_tensorflow(_state["debug"])
    from mnist_rnn.data import load_dataset
    from mnist_rnn.train import select_device, train

    device = select_device(cfg.train.device)
    dataset = load_dataset(cfg.data, cfg.seed)
    # Everything is validated: only now does anything appear on disk.
    runs.create_run_dir(target)
    argv = ["mnist-rnn", "train"]
    argv += ["--config", str(config)] if config else []
    for item in overrides or []:
        argv += ["--set", item]
    argv += ["--run-dir", str(run_dir)] if run_dir else []
    argv += ["--name", name] if name else []
    argv += ["--resume", str(resume)] if resume else []
    with runs.run_lock(target):
        err_console.print(f"run directory: {target}", highlight=False)
        train(cfg, dataset, target, device, err_console, argv=argv, resume=resume is not None)
    return target


@app.command(
    "train",
    epilog=(
        "Examples:\n\n"
        "  mnist-rnn train --config configs/default.yaml\n\n"
        "  mnist-rnn train -c configs/smoke.yaml --run-dir runs/try1\n\n"
        "  mnist-rnn train -c configs/lstm.yaml --set train.epochs=3 --set model.units=[64]\n\n"
        "  mnist-rnn train --resume runs/try1                      # continue an interrupted run\n\n"
        "  mnist-rnn train --resume runs/try1 --set train.epochs=20  # train a finished run longer"
    ),
)
def train_command(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config file (may name a `base:` file).")
    ] = None,
    overrides: SetOpt = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Write into exactly this (new or empty) directory.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Run name (sets `name`; used in the run folder).")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume", help="Continue this run from checkpoints/last (only train.epochs may change)."
        ),
    ] = None,
) -> None:
    """Train a model; writes checkpoints, history, metrics and the resolved config into a run directory.

    Without --run-dir the run goes to `<run.root>/<YYYYmmdd-HHMMSS>-<name>/`. The run directory is printed on
    stdout at the end; progress goes to stderr. Ctrl-C or SIGTERM stops after the current batch (exit 130 /
    143) keeping the checkpoint of the last finished epoch; `--resume RUN_DIR` continues from it.
    """
    target = _run(_train, config, overrides, run_dir, name, resume)
    out_console.print(str(target), highlight=False, markup=False)


# ------------------------------------------------------------------------------------------- eval


def _eval(run_path: Path, checkpoint: CheckpointName | None, split: SplitName) -> dict[str, Any]:
    import_tensorflow(_state["debug"])
    from mnist_rnn import runs
    from mnist_rnn.evaluate import evaluate_run

    run_dir, chosen = runs.resolve_run_dir(run_path, checkpoint.value if checkpoint else None)
    return evaluate_run(run_dir, chosen, split.value)


def _eval_tables(report: dict[str, Any]) -> None:
    summary = Table(
        title=(
            f"{report['split']} split, checkpoint {report['checkpoint']} (epoch {report['checkpoint_epoch']})"
        )
    )
    for col in ("samples", "loss", "accuracy"):
        summary.add_column(col, justify="right")
    summary.add_row(f"{report['samples']:,}", f"{report['loss']:.4f}", f"{report['accuracy']:.4f}")
    out_console.print(summary)

    confusion = Table(title="Confusion matrix (rows: true class, columns: predicted) and per-class accuracy")
    confusion.add_column("true", justify="right")
    for c in range(10):
        confusion.add_column(str(c), justify="right")
    confusion.add_column("accuracy", justify="right")
    for c, (row, acc) in enumerate(
        zip(report["confusion_matrix"], report["per_class_accuracy"], strict=True)
    ):
        cells = [f"[bold]{v}[/bold]" if i == c else (str(v) if v else "·") for i, v in enumerate(row)]
        confusion.add_row(str(c), *cells, f"{acc:.4f}")
    out_console.print(confusion)


@app.command(
    "eval",
    epilog=(
        "Examples:\n\n"
        "  mnist-rnn eval runs/20260101-120000-default\n\n"
        "  mnist-rnn eval runs/try1 --checkpoint last --split val\n\n"
        "  mnist-rnn eval runs/try1/checkpoints/best"
    ),
)
def eval_command(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory, or one of its checkpoints/<name> folders.")
    ],
    checkpoint: CheckpointOpt = None,
    split: Annotated[SplitName, typer.Option("--split", help="Which split to score.")] = SplitName.test,
) -> None:
    """Score a run's checkpoint: loss, accuracy, per-class accuracy and the confusion matrix.

    Writes `RUN_DIR/eval.json`.
    """
    report = _run(_eval, run_dir, checkpoint, split)
    _eval_tables(report)


# ----------------------------------------------------------------------------------------- export


class FormatName(StrEnum):
    saved_model = "saved_model"
    keras = "keras"
    tflite = "tflite"
    onnx = "onnx"


class QuantizeName(StrEnum):
    dynamic = "dynamic"


def _export(
    run_path: Path,
    fmt: FormatName,
    checkpoint: CheckpointName | None,
    out: Path | None,
    quantize: QuantizeName | None,
) -> dict[str, Any]:
    import_tensorflow(_state["debug"])
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
    fmt: Annotated[FormatName, typer.Option("--format", "-f", help="What to write.")],
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
    manifest = _run(_export, run_dir, fmt, checkpoint, out, quantize)
    parity = manifest["parity"]
    table = Table(
        title=f"{manifest['format']}{' (dynamic)' if manifest['quantize'] else ''} export", show_header=False
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("max |Δprob| vs Keras", f"{parity['max_abs_prob_diff']:.2e} on {parity['images']:,} images")
    table.add_row("same class as Keras", f"{parity['same_class_fraction']:.2%}")
    table.add_row(
        "test accuracy (artefact)", f"{manifest['test_accuracy']:.4f} on {manifest['test_samples']:,}"
    )
    table.add_row("test accuracy (Keras)", f"{manifest['keras_test_accuracy']:.4f}")
    for name, size in manifest["files"].items():
        table.add_row(name, f"{size / 1024:,.1f} KiB")
    err_console.print(table)
    out_console.print(manifest["path"], highlight=False, markup=False)


# ---------------------------------------------------------------------------------------- predict


def _predict(source: Path, images: list[Path], invert: bool) -> Any:
    import_tensorflow(_state["debug"])
    from mnist_rnn.predict import predict_files

    return predict_files(source, images, invert)


@app.command(
    "predict",
    epilog=(
        "Examples:\n\n"
        "  mnist-rnn predict runs/try1 digit.png scan.jpg --invert\n\n"
        "  mnist-rnn predict runs/try1/export/tflite t10k-images-idx3-ubyte.gz --json"
    ),
)
def predict_command(
    source: Annotated[Path, typer.Argument(help="A run directory (best checkpoint) or an export folder.")],
    images: Annotated[list[Path], typer.Argument(help="PNG/JPEG/... images (any size) or IDX image files.")],
    invert: Annotated[
        bool, typer.Option("--invert", help="Dark digits on a light background (scans).")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Classify image files with the same preprocessing as training.

    An unreadable file gets a one-line error on stderr; the others are still classified, and the exit code
    is then 2.
    """
    import json as json_module

    from mnist_rnn.predict import as_json

    predictions, errors, described = _run(_predict, source, images, invert)
    for error in errors:
        err_console.print(f"error: {error}", markup=False, highlight=False, style="red")
    if json_out:
        sys.stdout.write(json_module.dumps(as_json(predictions, errors), indent=2) + "\n")
    elif predictions:
        table = Table(title=f"Predictions ({described})")
        table.add_column("file", overflow="fold")  # never cut a file name
        table.add_column("class", justify="right")
        table.add_column("confidence", justify="right")
        for p in predictions:
            table.add_row(p.file, str(p.label), f"{p.confidence:.4f}")
        out_console.print(table)
    if errors:
        raise typer.Exit(EXIT_USAGE)


# ----------------------------------------------------------------------------------------- config


@config_app.command(
    "show",
    epilog="Examples:\n\n  mnist-rnn config show -c configs/lstm.yaml\n\n"
    "  mnist-rnn config show -c configs/default.yaml --set train.epochs=3",
)
def config_show(config: ConfigOpt, overrides: SetOpt = None) -> None:
    """Print the fully resolved config (defaults, `base:` chain and --set applied) as YAML."""
    from mnist_rnn.config import dump_config

    cfg = _run(_load, config, overrides)
    sys.stdout.write(dump_config(cfg))


@config_app.command("validate", epilog="Example:\n\n  mnist-rnn config validate -c configs/gru_stacked.yaml")
def config_validate(config: ConfigOpt, overrides: SetOpt = None) -> None:
    """Check a config; exit 0 if it is valid, else print the problem and exit 2."""
    _run(_load, config, overrides)
    err_console.print(f"{config}: valid", highlight=False, markup=False)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
