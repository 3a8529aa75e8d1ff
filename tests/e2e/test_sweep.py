"""`mnist-rnn sweep`: a sweep killed during its second run resumes and ends with every run finished once;
bad grids are refused before anything is written."""

from __future__ import annotations

import csv
import signal
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mnist_rnn import runs
from mnist_rnn.cli import app
from tests.conftest import TINY, start_cli

runner = CliRunner()
SWEPT = {**TINY, "data": {**TINY["data"], "limit_train": 3072}, "train": {**TINY["train"], "epochs": 4}}


def test_a_sweep_killed_in_its_second_run_resumes_and_finishes_every_run_once(tmp_path: Path) -> None:
    config = tmp_path / "swept.yaml"
    config.write_text(yaml.safe_dump(SWEPT))
    process = start_cli(
        "sweep",
        "-c",
        str(config),
        "--grid",
        "train.learning_rate=[0.01,0.02,0.03]",
        "--name",
        "s",
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        second = list((tmp_path / "runs").glob("*-s/02-*/checkpoints/last/model.keras"))
        if second:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the sweep ended before its second run was checkpointed: {process.stderr}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    (sweep_dir,) = (tmp_path / "runs").glob("*-s")
    first_metrics = (sweep_dir / "01-train.learning_rate=0.01" / "metrics.json").stat().st_mtime_ns
    assert not list(sweep_dir.glob("03-*"))  # the third had not started

    resumed = start_cli("sweep", "--resume", str(sweep_dir), cwd=tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert out.strip() == str(sweep_dir)
    assert "finished already; kept" in err and "resuming at epoch" in err
    trials = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert [p.name[:2] for p in trials] == ["01", "02", "03"]
    for trial in trials:  # each finished, each epoch exactly once
        assert runs.read_json(trial / "status.json")["status"] == "finished"
        assert [int(row["epoch"]) for row in runs.read_history(trial)] == [1, 2, 3, 4]
    assert (trials[0] / "metrics.json").stat().st_mtime_ns == first_metrics  # kept, not trained again
    with open(sweep_dir / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["train.learning_rate"] for row in rows) == ["0.01", "0.02", "0.03"]
    best = [float(row["best_val"]) for row in rows]
    assert best == sorted(best, reverse=True)


BAD = {
    "a grid key that does not exist": (["--grid", "model.colour=[red,blue]"], "model.colour: unknown key"),
    "a value of the wrong type": (["--grid", "model.units=[[64],[-3]]"], "sweep combination 2"),
    "a grid that is not a list": (["--grid", "train.epochs=3"], "expected KEY=[v1, v2, ...]"),
    "no grid at all": ([], "sweep needs at least one --grid"),
    "a key given twice": (["--grid", "seed=[1,2]", "--grid", "seed=[3]"], "seed is already in the grid"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_grid_is_one_line_exit_2_and_nothing_runs(case: str, tmp_path: Path) -> None:
    args, expected = BAD[case]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(TINY))
    result = runner.invoke(app, ["sweep", "-c", str(config), *args])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_stopped_sweep_says_how_to_continue_the_whole_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnist_rnn import sweep
    from mnist_rnn.errors import Interrupted

    def stopped(*args: object, **kwargs: object) -> None:
        raise Interrupted(
            "stopped by SIGINT during epoch 1; resume with: mnist-rnn train --resume X", signal.SIGINT
        )

    monkeypatch.setattr(sweep, "run_training", stopped)  # a Ctrl-C inside the first trial
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(TINY))
    result = runner.invoke(app, ["sweep", "-c", str(config), "--grid", "seed=[1,2]", "--name", "x"])
    assert result.exit_code == 130
    (sweep_dir,) = (tmp_path / "runs").glob("*-x")
    resume = f"or continue the whole sweep with: mnist-rnn sweep --resume {sweep_dir.relative_to(tmp_path)}"
    assert result.stderr.strip().endswith(resume)
