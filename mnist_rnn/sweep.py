"""`mnist-rnn sweep`: the cartesian product of a grid of config values, run one after another, each a normal
run in `<run.root>/<sweep-name>/<trial>/`, and resumable as a whole.

    sweep.yaml   what to run: the config file, the --set items, the grid, and the trials in order
    sweep.csv    one row per trial: its grid values and its figures, written at the end

Every combination is validated before the first run starts. A killed sweep resumes with `--resume`:
finished trials are kept, the interrupted one resumes exactly from its checkpoint, the rest start; a trial
that failed (e.g. its loss became NaN) is reported and the sweep goes on with the next.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from mnist_rnn import runs
from mnist_rnn.catalog import RunSummary, list_runs
from mnist_rnn.config import Config
from mnist_rnn.config_files import load_config, parse_override, parse_yaml
from mnist_rnn.errors import ConfigError, Interrupted, RunError, TrainingError
from mnist_rnn.tables import runs_table
from mnist_rnn.train import run_training

SWEEP_FILE, SWEEP_CSV = "sweep.yaml", "sweep.csv"


@dataclass(frozen=True)
class Trial:
    name: str  # its folder in the sweep: "02-model.units=[64]-train.learning_rate=0.01"
    values: dict[str, Any]  # grid key -> this trial's value
    cfg: Config


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`--grid model.units=[[64],[128]]` -> {"model.units": [[64], [128]]}; each value list parsed as YAML."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        parse_override(f"{key}=0")  # the key must look like a dotted key
        values, _ = parse_yaml(raw, f"--grid {item}") if sep else (None, None)
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"--grid {item}: expected KEY=[v1, v2, ...], e.g. --grid train.learning_rate=[1e-3,3e-3]"
            )
        if key in grid:
            raise ConfigError(f"--grid {item}: {key} is already in the grid; give its values once")
        grid[key] = values
    if not grid:
        raise ConfigError("sweep needs at least one --grid KEY=[v1, v2, ...]")
    return grid


def plan_trials(config: Path, overrides: list[str], grid: dict[str, list[Any]]) -> list[Trial]:
    """Every combination as a validated config (a bad value fails here, before anything runs)."""
    trials = []
    for number, combo in enumerate(itertools.product(*grid.values()), 1):
        values = dict(zip(grid, combo, strict=True))
        sets = [f"{key}={_yaml(value)}" for key, value in values.items()]
        try:
            cfg = load_config(config, [*overrides, *sets])
        except ConfigError as exc:
            raise ConfigError(f"sweep combination {number} ({', '.join(sets)}): {exc}") from None
        label = "-".join(re.sub(r"[^A-Za-z0-9._=\[\],-]", "", s.replace(" ", "")) for s in sets)
        trials.append(Trial(f"{number:02d}-{label}"[:120], values, cfg))
    return trials


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def start_sweep(
    config: Path, overrides: list[str], grid_items: list[str], name: str | None, console: Console
) -> Path:
    """Plan and validate every trial, create the sweep folder, and run them."""
    grid = parse_grid(grid_items)
    trials = plan_trials(config, overrides, grid)
    first = trials[0].cfg
    sweep_dir = runs.plan_run_dir(first.run.root, name or f"{first.name}-sweep", None)
    try:
        sweep_dir.mkdir(parents=True)
    except OSError as exc:
        raise RunError(
            f"{sweep_dir}: cannot create the sweep folder ({exc.strerror}); check run.root"
        ) from None
    spec = {"config": str(config.resolve()), "overrides": overrides, "grid": grid_items,
            "trials": [t.name for t in trials]}  # fmt: skip
    runs.atomic_write_text(sweep_dir / SWEEP_FILE, yaml.safe_dump(spec, sort_keys=False))
    return run_trials(sweep_dir, trials, console)


def resume_sweep(sweep_dir: Path, console: Console) -> Path:
    """Continue a sweep from its sweep.yaml: finished trials are kept, the rest run or resume."""
    if not (sweep_dir / SWEEP_FILE).is_file():
        raise RunError(
            f"{sweep_dir}: not a sweep folder (no {SWEEP_FILE}); pass a folder made by mnist-rnn sweep"
        )
    spec = _read_spec(sweep_dir / SWEEP_FILE)
    trials = plan_trials(Path(spec["config"]), list(spec["overrides"]), parse_grid(list(spec["grid"])))
    if [t.name for t in trials] != spec["trials"]:
        raise RunError(
            f"{sweep_dir}: {spec['config']} no longer gives this sweep's trials; start a new sweep"
        )
    return run_trials(sweep_dir, trials, console)


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(path.read_text())
        assert isinstance(spec, dict) and {"config", "overrides", "grid", "trials"} <= set(spec)
    except (OSError, yaml.YAMLError, AssertionError):
        raise RunError(
            f"{path}: damaged (it needs config, overrides, grid and trials); start a new sweep"
        ) from None
    return spec


def run_trials(sweep_dir: Path, trials: list[Trial], console: Console) -> Path:
    for number, trial in enumerate(trials, 1):
        run_dir = sweep_dir / trial.name
        console.print(f"sweep {sweep_dir.name}: trial {number}/{len(trials)} {trial.name}", highlight=False)
        status = runs.run_status(run_dir) if run_dir.exists() else None
        if status in (runs.RunStatus.finished, runs.RunStatus.failed):
            console.print(f"  {status} already; kept", highlight=False)
            continue
        if status is runs.RunStatus.unsaved:
            shutil.rmtree(run_dir)  # killed before its first checkpoint: nothing in it to keep
        resume = status in (runs.RunStatus.interrupted, runs.RunStatus.running)  # running: the lock refuses
        try:
            run_training(trial.cfg, run_dir, resume=resume, console=console)
        except TrainingError as exc:  # this trial diverged; the others may not
            console.print(f"  failed: {exc}", highlight=False, style="red")
        except Interrupted as exc:  # the person wants the sweep back, not just this trial
            message = f"{exc}; or continue the whole sweep with: mnist-rnn sweep --resume {sweep_dir}"
            raise Interrupted(message, exc.signum) from None
    summaries = list_runs(sweep_dir, "best_val")
    runs.atomic_write_text(sweep_dir / SWEEP_CSV, sweep_csv(trials, summaries))
    console.print(runs_table(summaries, f"Sweep {sweep_dir} (best validation first)"))
    return sweep_dir


def sweep_csv(trials: list[Trial], summaries: list[RunSummary]) -> str:
    """One row per trial, best validation accuracy first: its grid values and its figures."""
    by_name = {s.run: s for s in summaries}
    keys = list(trials[0].values)
    fields = [
        "run",
        *keys,
        "status",
        "epochs_done",
        "best_val",
        "test_accuracy",
        "wall_seconds",
        "parameters",
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    order = {s.run: i for i, s in enumerate(summaries)}
    for trial in sorted(trials, key=lambda t: order.get(t.name, len(order))):
        summary = asdict(by_name[trial.name]) if trial.name in by_name else {"run": trial.name}
        writer.writerow(
            {**{k: summary.get(k) for k in fields}, **{k: _yaml(v) for k, v in trial.values.items()}}
        )
    return buffer.getvalue()
