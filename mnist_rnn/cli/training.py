"""`mnist-rnn train`: parse the options, load the config, call `train.run_training`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mnist_rnn.cli.app import SetOpt, app, err_console, load, out_console, run, state
from mnist_rnn.errors import ConfigError
from mnist_rnn.tf_import import import_tensorflow

# ------------------------------------------------------------------------------------------ train


def _command_line(ctx: typer.Context) -> list[str]:
    """The command as typed, rebuilt from what click parsed (CliRunner leaves sys.argv untouched)."""
    argv = ["mnist-rnn", ctx.info_name or "train"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value is None or value is False or value == param.default:
            continue
        flag = param.opts[0]
        for item in value if isinstance(value, list | tuple) else [value]:
            argv += [flag] if item is True else [flag, str(item)]
    return argv


def _train(
    config: Path | None,
    overrides: list[str] | None,
    run_dir: Path | None,
    name: str | None,
    resume: Path | None,
    command: list[str],
) -> Path:
    from mnist_rnn import runs

    if resume is not None:
        if run_dir is not None or name is not None:
            raise ConfigError("--resume continues the given run; drop --run-dir and --name")
        run_dir, _ = runs.resolve_run_dir(resume)
        cfg = load(config or run_dir / runs.CONFIG, overrides)
    elif config is None:
        raise ConfigError("train needs --config FILE (or --resume RUN_DIR); see mnist-rnn train --help")
    else:
        cfg = load(config, overrides, name)
    import_tensorflow(state["debug"])
    from mnist_rnn.train import run_training

    result = run_training(cfg, run_dir, resume=resume is not None, console=err_console, command=command)
    return result.run_dir


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
    ctx: typer.Context,
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
            "--resume",
            help="Continue this run from checkpoints/last (only train.epochs, train.lr_extend may change).",
        ),
    ] = None,
) -> None:
    """Train a model; writes checkpoints, history, metrics and the resolved config into a run directory.

    Without --run-dir the run goes to `<run.root>/<YYYYmmdd-HHMMSS>-<name>/`. The run directory is printed on
    stdout at the end; progress goes to stderr. Ctrl-C or SIGTERM stops after the current batch (exit 130 /
    143) keeping the checkpoint of the last finished epoch; `--resume RUN_DIR` continues from it.
    """
    target = run(_train, config, overrides, run_dir, name, resume, _command_line(ctx))
    out_console.print(str(target), highlight=False, markup=False)
