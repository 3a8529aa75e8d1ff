"""`mnist-rnn runs list|compare`: look at many runs at once."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mnist_rnn.catalog import SortKey
from mnist_rnn.cli.app import app, err_console, out_console, run
from mnist_rnn.tables import compare_table, runs_table

runs_app = typer.Typer(help="List and compare runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


@runs_app.command(
    "list",
    epilog="Examples:\n\n  mnist-rnn runs list\n\n  mnist-rnn runs list runs/my-sweep --sort best_val\n\n"
    "  mnist-rnn runs list --json",
)
def list_command(
    root: Annotated[Path, typer.Argument(help="A folder of run directories (a sweep folder too).")] = Path(
        "runs"
    ),
    sort: Annotated[
        SortKey | None,
        typer.Option(
            "--sort", help="Sort by this column, figures best first [default: run; best_val in a sweep]."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """One row per run: config, model, parameters, epochs done/planned, best validation and test accuracy,
    training time, and status (finished, interrupted with the command that resumes it, failed, running)."""
    from mnist_rnn.catalog import as_dicts, list_runs

    rows = run(list_runs, root, sort.value if sort else None)
    if json_out:
        sys.stdout.write(json.dumps(as_dicts(rows), indent=2) + "\n")
    else:
        out_console.print(runs_table(rows, f"Runs under {root}"))


def _compare(run_dirs: list[Path], out: Path) -> dict[str, Any]:
    from mnist_rnn import runs
    from mnist_rnn.catalog import compare_runs
    from mnist_rnn.plots import COMPARE, plot_compare

    report = compare_runs(run_dirs)
    histories = {f"{i}: {Path(p).name}": runs.read_history(Path(p)) for i, p in enumerate(report["runs"], 1)}
    out.mkdir(parents=True, exist_ok=True)
    report["picture"] = str(plot_compare(histories, out / COMPARE))
    return report


@runs_app.command(
    "compare",
    epilog="Examples:\n\n  mnist-rnn runs compare runs/a runs/b\n\n"
    "  mnist-rnn runs compare runs/sweep/* --out /tmp/cmp --json",
)
def compare_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run directories.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for compare.png.")] = Path("."),
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """The config keys that differ between runs (only those), their metrics side by side, and compare.png
    with their validation accuracy per epoch."""
    report = run(_compare, run_dirs, out)
    if json_out:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        out_console.print(compare_table(report))
    err_console.print(f"wrote {report['picture']}", highlight=False, markup=False)
