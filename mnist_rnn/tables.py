"""What a person reads in the terminal: the training progress bar and the Rich tables of every command.

Pure rendering of figures the commands computed: no training, scoring or file writing happens here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from mnist_rnn.catalog import RunSummary
    from mnist_rnn.predict import Prediction


def format_value(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def progress_bar(console: Console) -> Progress:
    """One bar per epoch, removed when the epoch ends (its fixed log line stays)."""
    return Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.4f}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _two_columns(title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    return table


def summary_table(metrics: dict[str, Any]) -> Table:
    """The end of `train`: metrics.json's headline figures."""
    table = _two_columns("Run summary")
    table.add_row("best epoch", str(metrics["best_epoch"]))
    table.add_row("best val accuracy", format_value(metrics["best_val_accuracy"]))
    table.add_row("test accuracy (best)", f"{metrics['test_accuracy']:.4f}")
    table.add_row("test loss (best)", f"{metrics['test_loss']:.4f}")
    table.add_row("training time", f"{metrics['train_seconds']:.1f} s")
    table.add_row("samples / second", f"{metrics['samples_per_second']:,.0f}")
    return table


def eval_tables(report: dict[str, Any]) -> list[Table]:
    """`eval`: the split's loss and accuracy, then the confusion matrix with per-class accuracy."""
    summary = Table(
        title=(
            f"{report['split']} split, checkpoint {report['checkpoint']} (epoch {report['checkpoint_epoch']})"
        )
    )
    for col in ("samples", "loss", "accuracy"):
        summary.add_column(col, justify="right")
    summary.add_row(f"{report['samples']:,}", f"{report['loss']:.4f}", f"{report['accuracy']:.4f}")

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
    return [summary, confusion]


def export_table(manifest: dict[str, Any]) -> Table:
    """`export`: the artefact's parity with the Keras model, its accuracy and its files."""
    parity = manifest["parity"]
    table = _two_columns(f"{manifest['format']}{' (dynamic)' if manifest['quantize'] else ''} export")
    table.add_row("max |Δprob| vs Keras", f"{parity['max_abs_prob_diff']:.2e} on {parity['images']:,} images")
    table.add_row("same class as Keras", f"{parity['same_class_fraction']:.2%}")
    table.add_row(
        "test accuracy (artefact)", f"{manifest['test_accuracy']:.4f} on {manifest['test_samples']:,}"
    )
    table.add_row("test accuracy (Keras)", f"{manifest['keras_test_accuracy']:.4f}")
    for name, size in manifest["files"].items():
        table.add_row(name, f"{size / 1024:,.1f} KiB")
    return table


def predictions_table(predictions: list[Prediction], described: str) -> Table:
    """`predict`: one row per classified image."""
    table = Table(title=f"Predictions ({described})")
    table.add_column("file", overflow="fold")  # never cut a file name
    table.add_column("class", justify="right")
    table.add_column("confidence", justify="right")
    for p in predictions:
        table.add_row(p.file, str(p.label), f"{p.confidence:.4f}")
    return table


def runs_table(rows: list[RunSummary], title: str) -> Table:
    """`runs list` (and a sweep's summary): one row per run; how to resume an interrupted one is the
    table's caption, so the rows stay narrow enough for an 80-column terminal."""
    table = Table(title=title, caption="\n".join(f"{r.run}: {r.resume}" for r in rows if r.resume) or None)
    table.add_column("run", overflow="fold", ratio=3, min_width=16)  # a sweep trial's name is long
    table.add_column("config", overflow="fold")
    table.add_column("model", overflow="fold")
    for name in ("params", "epochs", "best val", "test acc", "wall"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for r in rows:
        table.add_row(
            r.run, r.config, f"{r.cell} {r.units} {r.layout}",
            "-" if r.parameters is None else f"{r.parameters:,}",
            f"{r.epochs_done}/{r.epochs_planned}",
            format_value(r.best_val), format_value(r.test_accuracy),
            _duration(r.wall_seconds),
            r.status,
        )  # fmt: skip
    return table


def compare_table(report: dict[str, Any]) -> Table:
    """`runs compare`: the differing config keys, then the metrics, one column per run."""
    table = Table(title="Runs compared (only the config keys that differ)")
    table.add_column("key")
    for i, path in enumerate(report["runs"], 1):
        table.add_column(f"{i}: {path}", overflow="fold")
    for key, values in report["differing"].items():
        table.add_row(key, *(str(v) for v in values))
    if not report["differing"]:
        table.add_row("(no config key differs)", *("" for _ in report["runs"]))
    table.add_section()
    for key, values in report["metrics"].items():
        spec = ".1f" if key == "wall_seconds" else ".4f"
        cells = [
            format_value(v, spec) if isinstance(v, float) else ("-" if v is None else str(v)) for v in values
        ]
        table.add_row(key, *cells)
    return table


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f}s" if seconds < 60 else f"{seconds / 60:.1f}m"
