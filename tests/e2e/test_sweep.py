"""`mnist-rnn sweep` on Optuna, through the CLI and real processes: a sweep killed inside a trial resumes that
trial from its checkpoint; two local workers, four joining processes and two "machines" on a real PostgreSQL
each run every grid point exactly once; median pruning stops the clearly bad trials; bad input is one line,
exit 2, and nothing is created."""

from __future__ import annotations

import csv
import signal
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from mnist_rnn import runs
from mnist_rnn.cli import app
from mnist_rnn.config_files import load_config
from tests.conftest import TINY, start_cli

runner = CliRunner()
SWEPT = {**TINY, "data": {**TINY["data"], "limit_train": 3072}, "train": {**TINY["train"], "epochs": 4}}
QUICK = {**TINY, "data": {**TINY["data"], "limit_train": 512}, "train": {**TINY["train"], "epochs": 1}}


def write(tmp_path: Path, config: dict[str, Any], name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def trial_runs(*sweep_dirs: Path) -> list[Path]:
    return sorted(p.parent for d in sweep_dirs for p in d.glob(f"*/{runs.CONFIG}"))


def points(run_dirs: list[Path], *keys: str) -> list[tuple[Any, ...]]:
    """Each run's values of `keys` (dotted), read back from its config.yaml."""
    found = []
    for run_dir in run_dirs:
        cfg = load_config(run_dir / runs.CONFIG).model_dump()
        found.append(tuple(_get(cfg, key) for key in keys))
    return sorted(found)


def _get(data: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_each_finished_once(run_dirs: list[Path], epochs: int) -> None:
    for run_dir in run_dirs:
        assert runs.run_status(run_dir) is runs.RunStatus.finished, run_dir
        assert [int(row["epoch"]) for row in runs.read_history(run_dir)] == list(range(1, epochs + 1))


@pytest.mark.slow  # about 40 s of training: run by .ci/run with -m slow
def test_a_sweep_killed_in_its_second_run_resumes_that_trial_and_finishes_every_run_once(
    tmp_path: Path,
) -> None:
    config = write(tmp_path, SWEPT)
    grid = "train.learning_rate=[0.01,0.02,0.03]"
    process = start_cli("sweep", "-c", str(config), "--grid", grid, "--name", "s", cwd=tmp_path)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if list((tmp_path / "runs").glob("*-s/002-*/checkpoints/last/model.keras")):
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the sweep ended before its second run was checkpointed: {process.stderr}"
    process.send_signal(signal.SIGKILL)  # inside the second trial: Optuna still has it running
    process.wait()
    (sweep_dir,) = (tmp_path / "runs").glob("*-s")
    (first,) = sweep_dir.glob("001-*")
    first_metrics = (first / runs.METRICS).stat().st_mtime_ns
    assert not list(sweep_dir.glob("003-*"))  # the third had not started

    resumed = start_cli("sweep", "--resume", str(sweep_dir), cwd=tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert out.strip() == str(sweep_dir)
    assert (
        "trial 2/3" in err and "a retry: it resumes from its checkpoint" in err and "resuming at epoch" in err
    )
    trials = trial_runs(sweep_dir)
    assert [p.name[:3] for p in trials] == ["001", "002", "003"]
    assert_each_finished_once(trials, 4)  # the retried trial went on from its checkpoint, no epoch twice
    assert (first / runs.METRICS).stat().st_mtime_ns == first_metrics  # kept, not trained again
    rows = read_csv(sweep_dir / "sweep.csv")
    assert sorted(row["train.learning_rate"] for row in rows) == ["0.01", "0.02", "0.03"]
    assert {row["trial_state"] for row in rows} == {"complete"}
    best = [float(row["best_val"]) for row in rows]
    assert best == sorted(best, reverse=True)


@pytest.mark.slow  # two TensorFlow processes, about 25 s: run by .ci/run with -m slow
def test_two_local_workers_run_each_point_of_a_six_point_grid_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bound of 1 MiB makes each worker go on in a fresh process after its second trial (the bound is
    # 1 GiB by default): the sweep must not notice, and the fresh process must start small again.
    monkeypatch.setenv("MNIST_RNN_SWEEP_RECYCLE_MIB", "1")
    config = write(tmp_path, QUICK)
    args = ["--grid", "seed=[1,2,3]", "--grid", "model.units=[[8],[16]]", "--workers", "2", "--name", "w"]
    process = start_cli("sweep", "-c", str(config), *args, cwd=tmp_path)
    out, err = process.communicate(timeout=400)
    assert process.returncode == 0, err
    sweep_dir = Path(out.strip())
    assert "worker 1/2 on cores" in err and "worker 2/2 on cores" in err
    trials = trial_runs(sweep_dir)
    assert points(trials, "seed", "model.units") == [(s, (u,)) for s in (1, 2, 3) for u in (8, 16)]
    assert_each_finished_once(trials, 1)
    rows = read_csv(sweep_dir / "sweep.csv")
    assert len(rows) == 6 and {row["status"] for row in rows} == {"finished"}
    assert all(row["best_val"] for row in rows)
    assert "it goes on in a fresh process" in err
    study = optuna.load_study(study_name=sweep_dir.name, storage=f"sqlite:///{sweep_dir / 'study.db'}")
    by_worker: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for trial in study.trials:
        by_worker.setdefault(trial.user_attrs["pid"], []).append(trial)
    assert len(by_worker) == 2
    for trials_of_one in by_worker.values():
        generations = [t.user_attrs["generation"] for t in trials_of_one]
        assert generations[:2] == [0, 0] and generations == sorted(generations)
        if len(generations) > 2:  # started afresh: smaller than the process it replaced
            assert trials_of_one[2].user_attrs["rss_mib"] < trials_of_one[1].user_attrs["rss_mib"]


@pytest.mark.slow  # four TensorFlow processes: run by .ci/run with -m slow
def test_four_processes_joining_a_fresh_study_at_once_share_it_without_a_race(tmp_path: Path) -> None:
    config = write(tmp_path, QUICK)
    created = runner.invoke(app, ["sweep", "-c", str(config), "--grid", "seed=[1,2,3,4]", "--workers", "0"])
    assert created.exit_code == 0, created.stderr
    sweep_dir = tmp_path / created.stdout.strip()
    assert "created; work on it here with: mnist-rnn sweep --join" in created.stderr
    assert not trial_runs(sweep_dir)  # nothing ran
    joins = [start_cli("sweep", "--join", str(sweep_dir), cwd=tmp_path) for _ in range(4)]
    results = [p.communicate(timeout=400) for p in joins]
    assert [p.returncode for p in joins] == [0] * 4, [err[-2000:] for _, err in results]
    trials = trial_runs(sweep_dir)
    assert points(trials, "seed") == [(1,), (2,), (3,), (4,)]
    assert_each_finished_once(trials, 1)
    study = optuna.load_study(study_name=sweep_dir.name, storage=f"sqlite:///{sweep_dir / 'study.db'}")
    complete = [t for t in study.trials if t.state is optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["seed"] for t in complete) == ["1", "2", "3", "4"]  # YAML texts, each once


@pytest.mark.slow  # five trainings, about 25 s: run by .ci/run with -m slow
def test_median_pruning_stops_trials_with_a_hopeless_learning_rate(tmp_path: Path) -> None:
    # The random sampler's draws (seed 7) are 3.0, 3.0, 0.01, 0.01, 3.0: the median pruner starts comparing
    # at the fourth trial, so the last meets two good and two hopeless finished ones.
    config = write(tmp_path, {**TINY, "train": {**TINY["train"], "epochs": 2}})
    args = ["--search", "train.learning_rate=choice(0.01,3.0)", "--sampler", "random", "--trials", "5"]
    result = runner.invoke(app, ["sweep", "-c", str(config), *args, "--prune", "median", "--name", "p"])
    assert result.exit_code == 0, result.stderr
    sweep_dir = tmp_path / result.stdout.strip()
    rows = read_csv(sweep_dir / "sweep.csv")
    pruned = [row for row in rows if row["status"] == "pruned"]
    assert pruned, rows
    assert {row["train.learning_rate"] for row in pruned} == {"3.0"}  # only the hopeless ones
    assert all(row["epochs_done"] == "1" and row["trial_state"] == "pruned" for row in pruned)
    listed = runner.invoke(app, ["runs", "list", str(sweep_dir), "--json"])
    assert sum(run["status"] == "pruned" for run in yaml.safe_load(listed.stdout)) == len(pruned)


@pytest.mark.slow  # a PostgreSQL server and three processes: run by .ci/run with -m slow
def test_two_machines_finish_a_grid_together_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    # Each "machine" has its own working folder; the study is the only thing they share. The URL carries a
    # password (the server trusts the socket, so any is accepted): it must not be written anywhere.
    url = postgres_url.replace("postgres@", "postgres:s3cret-pw@")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    config = write(a, QUICK)
    create = ["sweep", "-c", str(config), "--grid", "seed=[1,2,3,4]", "--workers", "0", "--name", "pg"]
    created = start_cli(*create, "--storage", url, cwd=a)
    out, err = created.communicate(timeout=120)
    assert created.returncode == 0, err
    name = Path(out.strip()).name
    joins = [start_cli("sweep", "--join", name, "--storage", url, cwd=where) for where in (a, b)]
    results = [p.communicate(timeout=400) for p in joins]
    assert [p.returncode for p in joins] == [0, 0], [err[-2000:] for _, err in results]
    trials = trial_runs(a / "runs" / name, b / "runs" / name)
    assert points(trials, "seed") == [(1,), (2,), (3,), (4,)]  # each point once, across both machines
    assert_each_finished_once(trials, 1)
    for machine in (a, b):
        rows = read_csv(machine / "runs" / name / "sweep.csv")
        assert sorted(row["seed"] for row in rows) == ["1", "2", "3", "4"]
        assert {row["trial_state"] for row in rows} == {"complete"}
        for path in (p for p in machine.rglob("*") if p.is_file()):
            assert b"s3cret-pw" not in path.read_bytes(), path
    missing = runner.invoke(app, ["sweep", "--join", "no-such-sweep", "--storage", url])
    assert missing.exit_code == 2 and "no sweep named no-such-sweep" in missing.stderr


MULTI_WORKER = {**TINY, "train": {**TINY["train"], "strategy": "multi_worker"}}
BAD = {
    "a grid key that does not exist": (["--grid", "model.colour=[red,blue]"], "model.colour: unknown key"),
    "a search key that does not exist": (
        ["--search", "model.colour=choice(red,blue)", "--trials", "2"],
        "model.colour: unknown key",
    ),
    "a value of the wrong type": (["--grid", "model.units=[[64],[-3]]"], "sweep combination 2"),
    "a range end the config refuses": (
        ["--search", "model.dropout=uniform(0,1.5)", "--trials", "2"],
        "dropout",
    ),
    "a grid that is not a list": (["--grid", "train.epochs=3"], "expected KEY=[v1, v2, ...]"),
    "a distribution that does not exist": (
        ["--search", "train.learning_rate=gauss(0,1)", "--trials", "2"],
        "is not a distribution",
    ),
    "a range upside down": (
        ["--search", "train.learning_rate=loguniform(1e-2,1e-4)", "--trials", "2"],
        "low < high",
    ),
    "a search without a trial count": (["--search", "seed=int(1,5)"], "--search needs --trials"),
    "a grid and a search": (["--grid", "seed=[1,2]", "--search", "model.dropout=uniform(0,0.5)"], "not both"),
    "no grid at all": ([], "sweep needs at least one --grid"),
    "a key given twice": (["--grid", "seed=[1,2]", "--grid", "seed=[3]"], "seed is already in the sweep"),
    "a storage that cannot be reached": (
        ["--grid", "seed=[1,2]", "--storage", "postgresql+psycopg2://me:pw@127.0.0.1:9/none"],
        "cannot open the study storage",
    ),
    "a storage URL that is not one": (["--grid", "seed=[1,2]", "--storage", "not-a-url"], "cannot open"),
    "joining a sweep that does not exist": (["--join", "nowhere"], "not a sweep folder"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_sweep_input_is_one_line_exit_2_and_nothing_is_created(case: str, tmp_path: Path) -> None:
    args, expected = BAD[case]
    config = ["-c", str(write(tmp_path, TINY))] if "--join" not in args else []
    result = runner.invoke(app, ["sweep", *config, *args])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "pw@" not in result.stderr  # a password is never shown
    assert not (tmp_path / "runs").exists()


def test_a_multi_worker_strategy_is_refused_inside_a_sweep(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sweep", "-c", str(write(tmp_path, MULTI_WORKER)), "--grid", "seed=[1,2]"])
    assert result.exit_code == 2 and "multi_worker cannot run inside a sweep" in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_stopped_sweep_says_how_to_continue_the_whole_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnist_rnn import sweep_worker
    from mnist_rnn.errors import Interrupted

    def stopped(*args: object, **kwargs: object) -> None:
        raise Interrupted(
            "stopped by SIGINT during epoch 1; resume with: mnist-rnn train --resume X", signal.SIGINT
        )

    monkeypatch.setattr(sweep_worker, "run_training", stopped)  # a Ctrl-C inside the first trial
    result = runner.invoke(
        app, ["sweep", "-c", str(write(tmp_path, TINY)), "--grid", "seed=[1,2]", "--name", "x"]
    )
    assert result.exit_code == 130
    (sweep_dir,) = (tmp_path / "runs").glob("*-x")
    resume = f"or continue the whole sweep with: mnist-rnn sweep --resume {sweep_dir.relative_to(tmp_path)}"
    assert result.stderr.strip().endswith(resume)
    study = optuna.load_study(study_name=sweep_dir.name, storage=f"sqlite:///{sweep_dir / 'study.db'}")
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1  # the interrupted trial is queued to run again
