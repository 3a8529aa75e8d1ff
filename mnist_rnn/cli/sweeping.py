"""`mnist-rnn sweep`: a grid of configs, each a normal run, in one folder; resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mnist_rnn.cli.app import SetOpt, app, err_console, out_console, run, state
from mnist_rnn.errors import ConfigError
from mnist_rnn.tf_import import import_tensorflow


def _sweep(
    config: Path | None,
    grid: list[str] | None,
    overrides: list[str] | None,
    name: str | None,
    resume: Path | None,
) -> Path:
    from mnist_rnn.sweep import resume_sweep, start_sweep

    if resume is not None:
        if config is not None or grid or overrides or name:
            raise ConfigError(
                "--resume continues the sweep as it was planned; drop --config, --grid, --set, --name"
            )
        import_tensorflow(state["debug"])
        return resume_sweep(resume, err_console)
    if config is None:
        raise ConfigError("sweep needs --config FILE and --grid KEY=[v1,v2,...] (or --resume SWEEP_DIR)")
    import_tensorflow(state["debug"])
    return start_sweep(config, list(overrides or []), list(grid or []), name, err_console)


@app.command(
    "sweep",
    epilog=(
        "Examples:\n\n"
        "  mnist-rnn sweep -c configs/smoke.yaml --grid model.cell=[lstm,gru] --grid train.epochs=[2,4]\n\n"
        "  mnist-rnn sweep -c configs/lstm.yaml --grid 'model.units=[[64],[128],[128,128]]' --name widths\n\n"
        "  mnist-rnn sweep --resume runs/20261125-120000-widths      # after a crash or Ctrl-C\n\n"
        "  mnist-rnn runs list runs/20261125-120000-widths"
    ),
)
def sweep_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="The base YAML config.")] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid", "-g", help="KEY=[v1,v2,...] (YAML); repeat for more keys: all combinations run."
        ),
    ] = None,
    overrides: SetOpt = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The sweep folder's name [default: CONFIG-sweep].")
    ] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue this sweep folder.")] = None,
) -> None:
    """Run every combination of the --grid values, one after another, into `<run.root>/<stamp>-<name>/`.

    Each trial is a normal run directory. Every combination is validated before the first starts. At the end
    a table sorted by best validation accuracy and `sweep.csv`. A killed sweep continues with --resume:
    finished trials are kept, the interrupted one resumes exactly, the rest start.
    """
    sweep_dir = run(_sweep, config, grid, overrides, name, resume)
    err_console.print(f"wrote {sweep_dir / 'sweep.csv'}", highlight=False, markup=False)
    out_console.print(str(sweep_dir), highlight=False, markup=False)
