"""The `mnist-rnn` application: the Typer app, its global options, and the one place that turns domain
errors into a line on stderr and an exit code. The commands live beside it, one module per group.

TensorFlow is imported inside the commands that need it, so `--help`, `--version`, `config ...` and
config errors answer without paying for it.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from mnist_rnn import __version__
from mnist_rnn.errors import (
    ConfigError,
    DataError,
    DeviceError,
    ExportError,
    Interrupted,
    MnistRnnError,
    RunError,
    TrainingError,
    UsageError,
)

# Progress and logs go to stderr; stdout carries only what a script wants (run dir, YAML, tables).
err_console = Console(stderr=True, soft_wrap=True)
out_console = Console(soft_wrap=True)

EXIT_RUNTIME, EXIT_USAGE, EXIT_SIGINT = 1, 2, 130

# The one mapping of domain errors to exit codes (the README's): 2 bad usage or input, 1 a runtime failure,
# 128 + the signal for an interrupted run (130 Ctrl-C, 143 SIGTERM). A subclass takes its base's code.
EXIT_CODES: dict[type[MnistRnnError], int] = {
    ConfigError: EXIT_USAGE,
    UsageError: EXIT_USAGE,
    DataError: EXIT_USAGE,
    RunError: EXIT_USAGE,
    DeviceError: EXIT_USAGE,
    TrainingError: EXIT_RUNTIME,
    ExportError: EXIT_RUNTIME,
}

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

state = {"debug": False}


class CheckpointName(StrEnum):
    best = "best"
    last = "last"


class SplitName(StrEnum):
    test = "test"
    val = "val"


def exit_code(exc: MnistRnnError) -> int:
    """The exit code for a domain error (`EXIT_CODES`, through its bases; 1 if none is named)."""
    if isinstance(exc, Interrupted):
        return 128 + exc.signum
    return next((EXIT_CODES[c] for c in type(exc).__mro__ if c in EXIT_CODES), EXIT_RUNTIME)


def fail(exc: BaseException, code: int) -> NoReturn:
    if state["debug"]:
        raise exc
    err_console.print(f"error: {exc}", markup=False, highlight=False, style="red")
    raise typer.Exit(code)


def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call fn; turn domain errors into one line and an exit code (a traceback only with --debug)."""
    try:
        return fn(*args, **kwargs)
    except MnistRnnError as exc:
        fail(exc, exit_code(exc))
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside training
        err_console.print("aborted (Ctrl-C); checkpoints of finished epochs are kept", style="yellow")
        raise typer.Exit(EXIT_SIGINT) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # an unexpected failure: still one line, and the way to see more
        if state["debug"]:
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
    state["debug"] = debug


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


def load(config: Path, overrides: list[str] | None, name: str | None = None) -> Any:
    from mnist_rnn.config_files import load_config

    items = list(overrides or [])
    if name is not None:
        items.append(f"name={name}")
    return load_config(config, items)
