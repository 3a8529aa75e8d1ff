"""A sweep's results, built from its study: `sweep.csv` (one row per trial point, best validation first)
and the table printed at the end. A point's row is its latest trial (a retry replaces the trial it repeats);
the run's figures come from its folder when this machine can reach it, else from the study alone."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from rich.console import Console

from mnist_rnn import runs
from mnist_rnn.catalog import RunSummary, list_runs
from mnist_rnn.sweep_space import as_yaml
from mnist_rnn.sweep_study import first_number
from mnist_rnn.tables import runs_table

if TYPE_CHECKING:
    from mnist_rnn.sweep_study import Plan

SWEEP_CSV = "sweep.csv"
FIGURES = ["status", "epochs_done", "best_val", "test_accuracy", "wall_seconds", "parameters"]


def latest_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The latest trial of each point drawn, in the order the points were first drawn."""
    latest: dict[int, optuna.trial.FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get("surplus"):
            continue
        latest[first_number(trial)] = trial
    return [latest[origin] for origin in sorted(latest)]


def write_results(
    sweep_dir: Path, storage: optuna.storages.BaseStorage, plan: Plan, console: Console
) -> Path:
    study = optuna.load_study(study_name=sweep_dir.name, storage=storage)
    summaries = {s.run: s for s in list_runs(sweep_dir, "best_val")} if _has_runs(sweep_dir) else {}
    keys = [p.key for p in plan.params()]
    rows = [_row(trial, summaries, keys) for trial in latest_trials(study)]
    rows.sort(key=lambda r: (r["best_val"] is None, -(r["best_val"] or 0.0)))
    runs.atomic_write_text(sweep_dir / SWEEP_CSV, _csv(rows, keys))
    shown = [summaries[r["run"]] for r in rows if r["run"] in summaries]
    console.print(runs_table(shown, f"Sweep {sweep_dir} (best validation first)"))
    console.print(f"wrote {sweep_dir / SWEEP_CSV}", highlight=False, markup=False)
    return sweep_dir


def _has_runs(sweep_dir: Path) -> bool:
    return any(sweep_dir.glob(f"*/{runs.CONFIG}"))


def _row(
    trial: optuna.trial.FrozenTrial, summaries: dict[str, RunSummary], keys: list[str]
) -> dict[str, Any]:
    run = trial.user_attrs.get("run", "")
    elsewhere = {"status": f"on {trial.user_attrs.get('host', 'another machine')}"}  # its folder is not here
    found: dict[str, Any] = asdict(summaries[run]) if run in summaries else elsewhere
    if run not in summaries and trial.value is not None:
        found["best_val"] = trial.value
    values = {k: as_yaml(v) if not isinstance(v, str) else v for k, v in trial.params.items()}
    return {"run": run, "trial_state": trial.state.name.lower(), **{k: values.get(k) for k in keys},
            **{k: found.get(k) for k in FIGURES}}  # fmt: skip


def _csv(rows: list[dict[str, Any]], keys: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["run", *keys, "trial_state", *FIGURES], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
