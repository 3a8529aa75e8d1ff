"""Train the sequential-MNIST benchmark's configs and print the results table beside the literature.

    python scripts/reproduce.py configs/benchmark/*_*.yaml                       # everything, to the end
    python scripts/reproduce.py configs/benchmark/*_*.yaml --budget-minutes 8    # what fits, labelled
    python scripts/reproduce.py configs/benchmark/*_*.yaml --table-only --record docs/results

Each config trains through `mnist_rnn.train.run_training` into `--root/<config name>/` (default
runs/reproduce), one after another so runs do not compete for cores. With `--budget-minutes M` a run stops at
the first epoch end after M minutes of this invocation's training; it is then a finished run of fewer epochs
than planned ("3 of 100"), and the next invocation resumes it from its checkpoint (`--resume`) rather than
starting again. A config whose run has all its epochs is not trained again. Every figure in the table is read
from that run's own metrics.json; nothing is typed in by hand. `--record DIR` writes the table to
DIR/table.md and copies each run's small files (config.yaml, command.txt, history.csv, metrics.json,
status.json) to DIR/runs/<name>/, so the figures' sources can be committed beside the table; rows already in
DIR/table.md for configs this call did not run are kept (their runs' files stay in DIR/runs/).
"""

from __future__ import annotations

import argparse
import math
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from mnist_rnn import runs
from mnist_rnn.config_files import load_config
from mnist_rnn.errors import Interrupted, MnistRnnError
from mnist_rnn.evaluate import evaluate_run
from mnist_rnn.loop import StopRequest
from mnist_rnn.train import EpochEnd, run_training

TASKS = {"rows": "row MNIST", "pixels": "pixel MNIST", "permuted_pixels": "permuted pixel MNIST"}

# Published test accuracies (%) per (layout, cell), with where each comes from. See docs/results.md for
# which were checked against the paper's text here and which could not be.
LITERATURE: dict[tuple[str, str], str] = {
    ("pixels", "janet"): "99.0 (JANET; van der Westhuizen & Lasenby 2018)",
    ("pixels", "lstm"): "98.5 (their LSTM); 98.9 (tuned LSTM, Gu et al. 2020)†",
    ("pixels", "gru"): "99.0 (IndRNN, Li et al. 2018)†, no GRU figure quoted",
    ("permuted_pixels", "janet"): "92.5 (JANET; van der Westhuizen & Lasenby 2018)",
    ("permuted_pixels", "lstm"): "91.0 (their LSTM); 95.1 (tuned LSTM, Gu et al. 2020)†",
    ("permuted_pixels", "gru"): "96.0 (IndRNN, Li et al. 2018)†, no GRU figure quoted",
}
ROW_NOTE = "no formal benchmark"


def _planned_and_done(run_dir: Path) -> tuple[int, int] | None:
    """(epochs planned, epochs run) of an existing run, or None if there is none to continue."""
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "checkpoints").is_dir():
        return None
    planned = load_config(run_dir / "config.yaml").train.epochs
    history = run_dir / "history.csv"
    done = max(len(history.read_text().splitlines()) - 1, 0) if history.is_file() else 0
    return planned, done


def train_within_budget(
    config: Path, root: Path, budget_s: float | None, console: Console, hard_s: float | None = None
) -> Path:
    cfg = load_config(config)
    run_dir = root / cfg.name
    existing = _planned_and_done(run_dir)
    if existing and existing[1] >= existing[0]:
        console.print(f"{config}: {run_dir} already has all {existing[0]} epochs")
        return run_dir
    start = time.monotonic()

    def out_of_budget(end: EpochEnd) -> bool:
        return budget_s is not None and time.monotonic() - start >= budget_s

    console.print(f"{config}: {'resuming' if existing else 'training'} {run_dir}")
    resume, stop = existing is not None, StopRequest()
    if hard_s is not None:  # as a SIGTERM would: stop after the batch in flight, checkpoints/last kept
        timer = threading.Timer(hard_s, lambda: setattr(stop, "signum", signal.SIGTERM))
        timer.daemon = True
        timer.start()
    try:
        run_training(
            load_config(run_dir / "config.yaml") if resume else cfg,
            run_dir,
            resume=resume,
            stop=stop,
            console=console,
            command=["scripts/reproduce.py", str(config)],
            on_epoch_end=out_of_budget,
        )
    except Interrupted as exc:
        console.print(f"{config}: {exc}; scoring checkpoints/last on the test split")
        evaluate_run(run_dir, checkpoint="last", split="test")
    return run_dir


def _figures(run_dir: Path, planned: int, batches: int) -> tuple[float, str, float]:
    """(test accuracy, epochs run, fit seconds): from metrics.json for a run that ended, or for a run
    stopped inside an epoch from eval.json (checkpoints/last scored) and that checkpoint's state."""
    if (run_dir / runs.METRICS).is_file():
        metrics = runs.read_json(run_dir / runs.METRICS)
        epochs = f"{metrics['epochs_run']} of {planned}"
        patience = load_config(run_dir / "config.yaml").train.early_stopping_patience
        # a budget also ends a run early; early stopping is the one that waited `patience` epochs
        if (
            metrics.get("stopped_early")
            and patience
            and metrics["epochs_run"] - metrics["best_epoch"] >= patience
        ):
            epochs += " (early stopping)"
        return metrics["test_accuracy"], epochs, metrics["train_seconds"]
    report = runs.read_json(run_dir / runs.EVAL)
    state = runs.read_checkpoint_state(run_dir, "last")
    epochs = f"{state['epoch']} of {planned}, + {state['step']} of {batches} batches (stopped)"
    return report["accuracy"], epochs, state.get("fit_seconds", float("nan"))


def table_row(run_dir: Path) -> dict[str, Any]:
    from mnist_rnn.data import training_images
    from mnist_rnn.execution import cpu_description

    cfg = load_config(run_dir / "config.yaml")
    batches = math.ceil(training_images(cfg.data) / cfg.train.batch_size)
    accuracy, epochs, seconds = _figures(run_dir, cfg.train.epochs, batches)
    status, facts = runs.read_status(run_dir), runs.read_command_facts(run_dir)
    machine = facts.get("gpu") or facts.get("cpu") or cpu_description()
    layout, cell = str(cfg.data.layout), str(cfg.model.cell)
    return {
        "task": TASKS.get(layout, layout),
        "config": cfg.name,
        "cell": cell + (f" {list(cfg.model.units)}" if cfg.model.units else ""),
        "parameters": status.get("parameters"),
        "epochs": epochs,
        "test_accuracy": accuracy,
        "wall_minutes": seconds / 60,
        "machine": machine,
        "literature": ROW_NOTE if layout == "rows" else LITERATURE.get((layout, cell), "-"),
        "run": str(run_dir),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| task | config | cell | parameters | epochs | test accuracy | training time | machine "
        "| literature |",
        "|---|---|---|---:|---|---:|---:|---|---|",
    ]
    for r in rows:
        params = f"{r['parameters']:,}" if r["parameters"] else "-"
        lines.append(
            f"| {r['task']} | `{r['config']}` | {r['cell']} | {params} | {r['epochs']} | "
            f"{r['test_accuracy']:.2%} | {r['wall_minutes']:.1f} min | {r['machine']} | {r['literature']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--root", type=Path, default=Path("runs/reproduce"), help="run directories (kept)")
    parser.add_argument(
        "--budget-minutes", type=float, help="per config: stop at the first epoch end after M"
    )
    parser.add_argument(
        "--table-only", action="store_true", help="train nothing; tabulate the runs there are"
    )
    parser.add_argument(
        "--hard-budget-minutes", type=float, help="stop inside an epoch after M minutes; score last"
    )
    parser.add_argument("--record", type=Path, help="write DIR/table.md and copy each run's figures there")
    args = parser.parse_args(argv)

    console = Console(stderr=True)
    rows = []
    for config in args.configs:
        run_dir = args.root / load_config(config).name
        if not args.table_only:
            try:
                budget = args.budget_minutes * 60 if args.budget_minutes is not None else None
                hard = args.hard_budget_minutes * 60 if args.hard_budget_minutes is not None else None
                train_within_budget(config, args.root, budget, console, hard)
            except MnistRnnError as exc:
                console.print(f"{config}: {exc}")
        if (run_dir / "metrics.json").is_file() or (run_dir / "eval.json").is_file():
            rows.append(table_row(run_dir))
        else:
            console.print(f"{config}: no finished run in {run_dir}; left out of the table")
    table = markdown(rows)
    print(table)
    if args.record:
        record(rows, args.record, table)
    return rows


RECORDED = ("config.yaml", "command.txt", "history.csv", "metrics.json", "eval.json", "status.json")


def record(rows: list[dict[str, Any]], folder: Path, table: str) -> None:
    for row in rows:
        target = folder / "runs" / row["config"]
        target.mkdir(parents=True, exist_ok=True)
        for name in RECORDED:  # a file the new run lacks goes too (an eval.json of a run stopped before)
            if (Path(row["run"]) / name).is_file():
                shutil.copy2(Path(row["run"]) / name, target / name)
            else:
                (target / name).unlink(missing_ok=True)
    (folder / "table.md").write_text(merged_table(folder / "table.md", rows, table) + "\n")


def merged_table(recorded: Path, rows: list[dict[str, Any]], table: str) -> str:
    """`table` with the rows of `recorded` whose configs this call did not run kept below, in their order:
    recording the row runs again keeps the pixel rows of an earlier session (their runs are not here)."""
    if not recorded.is_file():
        return table
    ran = {f"`{row['config']}`" for row in rows}
    kept = [
        line for line in recorded.read_text().splitlines()[2:]
        if line.startswith("|") and line.split("|")[2].strip() not in ran
    ]  # fmt: skip
    lines = table.splitlines()
    body = sorted(lines[2:] + kept, key=_task_order)
    return "\n".join(lines[:2] + body)


def _task_order(line: str) -> int:
    task = line.split("|")[1].strip()
    return list(TASKS.values()).index(task) if task in TASKS.values() else len(TASKS)


if __name__ == "__main__":
    main()
