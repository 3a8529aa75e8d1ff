"""`mnist-rnn sweep`: a grid or a sampled search on Optuna, each trial a normal run, in one folder; several
processes or machines may work on one sweep (--workers, --join); a killed sweep continues (--resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mnist_rnn.cli.app import SetOpt, app, err_console, out_console, run, state
from mnist_rnn.errors import ConfigError
from mnist_rnn.tf_import import import_tensorflow


def _sweep(
    config: Path | None,
    space: tuple[list[str], list[str]],
    overrides: list[str],
    options: dict[str, str | int | None],
    join: str | None,
) -> Path:
    from mnist_rnn.sweep import join_sweep, plan_sweep, start_sweep

    grid, search = space
    storage, workers = options["storage"], int(options["workers"] or 0)
    if workers < 0:
        raise ConfigError(f"--workers {workers}: give 1 or more (0: only create the study)")
    if join is not None:
        planned = {"--config": config, "--grid": grid, "--search": search, "--set": overrides,
                   "--name": options["name"], "--trials": options["trials"], "--sampler": options["sampler"],
                   "--prune": options["prune"]}  # fmt: skip
        given = [flag for flag, value in planned.items() if value]
        if given:
            raise ConfigError(
                f"--join/--resume works on the sweep as it was planned; drop {', '.join(given)}"
            )
        import_tensorflow(state["debug"])
        return join_sweep(join, None if storage is None else str(storage), max(workers, 1), err_console)
    if config is None:
        raise ConfigError(
            "sweep needs --config FILE and --grid KEY=[v1,v2,...] or --search KEY=DIST (or --join SWEEP)"
        )
    trials = options["trials"]
    plan = plan_sweep(config, overrides, grid, search, None if trials is None else int(trials),
                      _text(options["sampler"]), _text(options["prune"]))  # fmt: skip
    if workers == 1:
        import_tensorflow(state["debug"])  # only a worker in this process trains
    return start_sweep(plan, _text(options["name"]), _text(storage), workers, err_console)


def _text(value: str | int | None) -> str | None:
    return None if value is None else str(value)


GridOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--grid", "-g", help="KEY=[v1,v2,...] (YAML); repeat for more keys: every combination runs."
    ),
]
SearchOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--search",
        help="KEY=DIST, DIST one of choice(v1,v2,...), uniform(a,b), loguniform(a,b), int(a,b); repeat.",
    ),
]
PruneOpt = Annotated[
    str | None,
    typer.Option(
        "--prune",
        help="Stop poor trials early: none, median or hyperband [default: median for --search, none for "
        "--grid].",
    ),
]
WorkersOpt = Annotated[
    int, typer.Option("--workers", help="Processes on this machine (0: create the study, run nothing).")
]
JoinOpt = Annotated[
    str | None,
    typer.Option("--join", help="Work on an existing sweep: its folder, or its name with --storage."),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Study database URL [default: SQLite in the sweep folder; or $MNIST_RNN_SWEEP_STORAGE]. "
        "Keep passwords in ~/.pgpass or that variable.",
    ),
]


@app.command(
    "sweep",
    epilog=(
        "Examples:\n\n"
        "  mnist-rnn sweep -c configs/smoke.yaml --grid model.cell=[lstm,gru] --grid train.epochs=[2,4]\n\n"
        "  mnist-rnn sweep -c configs/lstm.yaml --search 'train.learning_rate=loguniform(1e-4,1e-2)' "
        "--search 'model.units=choice([64],[128])' --trials 20 --workers 2\n\n"
        "  mnist-rnn sweep --resume runs/20261125-120000-lstm-sweep      # after a crash or Ctrl-C\n\n"
        "  MNIST_RNN_SWEEP_STORAGE=postgresql+psycopg2://me@db/sweeps mnist-rnn sweep --join "
        "20261125-120000-lstm-sweep   # another machine\n\n"
        "  mnist-rnn runs list runs/20261125-120000-lstm-sweep"
    ),
)
def sweep_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="The base YAML config.")] = None,
    grid: GridOpt = None,
    search: SearchOpt = None,
    overrides: SetOpt = None,
    trials: Annotated[int | None, typer.Option("--trials", help="--search: how many points to try.")] = None,
    sampler: Annotated[
        str | None, typer.Option("--sampler", help="--search: tpe (default) or random.")
    ] = None,
    prune: PruneOpt = None,
    workers: WorkersOpt = 1,
    name: Annotated[
        str | None, typer.Option("--name", help="The folder's name [default: CONFIG-sweep].")
    ] = None,
    join: JoinOpt = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this sweep folder (as --join).")
    ] = None,
    storage: StorageOpt = None,
) -> None:
    """Search hyperparameters on Optuna; every trial is a normal run in `<run.root>/<stamp>-<name>/`.

    Every combination (or both ends of every range) is validated before anything starts. At the end a table
    sorted by best validation accuracy and `sweep.csv`. A killed sweep continues with --resume: finished
    trials are kept, the interrupted one resumes exactly from its checkpoint, the rest start.
    """
    if join is not None and resume is not None:
        run(_refuse, "give --join or --resume, not both")
    target = join if join is not None else (None if resume is None else str(resume))
    options: dict[str, str | int | None] = {"trials": trials, "sampler": sampler, "prune": prune,
                                            "workers": workers, "name": name, "storage": storage}  # fmt: skip
    sweep_dir = run(
        _sweep, config, (list(grid or []), list(search or [])), list(overrides or []), options, target
    )
    out_console.print(str(sweep_dir), highlight=False, markup=False)


def _refuse(message: str) -> None:
    raise ConfigError(message)
