"""Many runs at once: `runs list` (one row per run under a root) and `runs compare` (what differs).

Everything is read from the run directories themselves (config.yaml, history.csv, metrics.json,
status.json, the lock), so a run made on another machine and copied here lists the same way.
A run's status is `runs.run_status`'s (running, finished, failed, interrupted); a run that stopped before its
first checkpoint is listed as failed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from mnist_rnn import runs
from mnist_rnn.config_files import config_diff, config_to_dict, flatten
from mnist_rnn.errors import RunError


class SortKey(StrEnum):
    """The columns `runs list --sort` takes: figures sort best (largest) first, text alphabetically."""

    run = "run"
    config = "config"
    parameters = "parameters"
    epochs = "epochs"
    best_val = "best_val"
    test_accuracy = "test_accuracy"
    wall_seconds = "wall_seconds"
    status = "status"


SORT_KEYS = tuple(key.value for key in SortKey)


@dataclass(frozen=True)
class RunSummary:
    run: str  # the folder, relative to the listed root
    path: str
    config: str  # the config's `name`
    layout: str
    cell: str
    units: str
    parameters: int | None
    epochs_done: int
    epochs_planned: int
    best_val: float | None
    test_accuracy: float | None
    wall_seconds: float | None
    status: str
    resume: str | None  # the command that continues an interrupted run


def find_runs(root: Path) -> list[Path]:
    """Run directories under `root`: its children and, for a sweep folder, their children."""
    if not root.is_dir():
        raise RunError(f"{root}: no such folder of runs; pass the folder that holds run directories")
    found = sorted(
        p.parent for pattern in ("*/" + runs.CONFIG, "*/*/" + runs.CONFIG) for p in root.glob(pattern)
    )
    if not found:
        raise RunError(
            f"{root}: no runs here (no folder with a {runs.CONFIG}); train one or pass another folder"
        )
    return found


def run_status(run_dir: Path) -> tuple[str, str | None]:
    """(status as listed, the resume command for an interrupted run); a run stopped before its first
    checkpoint is listed as failed: there is nothing to resume."""
    status = runs.run_status(run_dir)
    if status is runs.RunStatus.interrupted:
        return str(status), f"mnist-rnn train --resume {run_dir}"
    return str(runs.RunStatus.failed if status is runs.RunStatus.unsaved else status), None


def summarize(run_dir: Path, root: Path) -> RunSummary:
    cfg = runs.read_run_config(run_dir)
    status, resume = run_status(run_dir)
    metrics = runs.read_json(run_dir / runs.METRICS) if status == "finished" else {}
    recorded = runs.read_status(run_dir)
    history = runs.read_history(run_dir) if (run_dir / runs.HISTORY).is_file() else []
    val = [float(row["val_accuracy"]) for row in history if row.get("val_accuracy")]
    wall = metrics.get("train_seconds") or (
        sum(float(row["seconds"]) for row in history) if history else None
    )
    return RunSummary(
        run=str(run_dir.relative_to(root)),
        path=str(run_dir),
        config=cfg.name,
        layout=str(cfg.data.layout),
        cell=str(cfg.model.cell),
        units="x".join(map(str, cfg.model.units)),
        parameters=recorded.get("parameters"),
        epochs_done=len(history),
        epochs_planned=cfg.train.epochs,
        best_val=max(val) if val else None,
        test_accuracy=metrics.get("test_accuracy"),
        wall_seconds=wall,
        status=status,
        resume=resume,
    )


def list_runs(root: Path, sort: str | None = None) -> list[RunSummary]:
    """Every run under `root`, sorted by `sort` (figures best first, text alphabetically); by default a
    sweep's trials by best validation accuracy, other runs by name (their start time)."""
    sort = sort or ("best_val" if (root / "sweep.yaml").is_file() else "run")
    if sort not in SORT_KEYS:
        raise RunError(f"cannot sort by {sort!r}; use one of: {', '.join(SORT_KEYS)}")
    rows = [summarize(run_dir, root) for run_dir in find_runs(root)]
    field = {"epochs": "epochs_done"}.get(sort, sort)
    if field in ("run", "config", "status"):
        return sorted(rows, key=lambda r: str(getattr(r, field)))
    present = sorted((r for r in rows if getattr(r, field) is not None), key=lambda r: -getattr(r, field))
    return present + [r for r in rows if getattr(r, field) is None]


def as_dicts(rows: list[RunSummary]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]


def compare_runs(run_dirs: list[Path]) -> dict[str, Any]:
    """The config keys that differ between the runs (only those) and their metrics side by side."""
    if len(run_dirs) < 2:
        raise RunError("runs compare needs at least two run directories")
    resolved = [runs.resolve_run_dir(path)[0] for path in run_dirs]
    configs = [runs.read_run_config(run_dir) for run_dir in resolved]
    differing = sorted({key for other in configs[1:] for key in config_diff(configs[0], other)})
    flat = [flatten(config_to_dict(cfg)) for cfg in configs]
    summaries = [summarize(run_dir, run_dir.parent) for run_dir in resolved]
    return {
        "runs": [str(p) for p in resolved],
        "differing": {key: [values.get(key) for values in flat] for key in differing},
        "metrics": {
            key: [getattr(s, key) for s in summaries]
            for key in ("status", "parameters", "epochs_done", "best_val", "test_accuracy", "wall_seconds")
        },
    }
