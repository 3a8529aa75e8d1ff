"""`runs list` and `runs compare` on runs made for the test: one of each status, and their differences."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_rnn.cli import app
from mnist_rnn.config_files import load_config
from mnist_rnn.data import load_dataset
from mnist_rnn.errors import Interrupted, TrainingError
from mnist_rnn.loop import StopRequest
from tests.conftest import TINY, train_run

runner = CliRunner()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """finished, interrupted, failed and running (a live process holds the lock) runs under one root."""
    root = tmp_path_factory.mktemp("runs")
    train_run(TINY, root / "finished", "train.epochs=1")
    with pytest.raises(Interrupted):
        train_run(TINY, root / "interrupted", "train.epochs=2", stop=StopRequest(after_step=20))
    cfg = load_config(root / "finished.yaml")
    poisoned = load_dataset(cfg.data, cfg.seed)
    poisoned.train.x[3, 3, 3] = np.nan  # in the first batch: nothing is ever checkpointed
    with pytest.raises(TrainingError):
        train_run(TINY, root / "failed", "train.epochs=1", dataset=poisoned)
    shutil.copytree(root / "interrupted", root / "running")
    holder = subprocess.Popen(["sleep", "300"])
    (root / "running" / ".lock").write_text(str(holder.pid))
    for config in root.glob("*.yaml"):
        config.unlink()
    yield root
    holder.kill()
    holder.wait()


def test_runs_list_reports_each_status(root: Path) -> None:
    result = runner.invoke(app, ["runs", "list", str(root), "--json"])
    assert result.exit_code == 0, result.stderr
    rows = {row["run"]: row for row in json.loads(result.stdout)}
    assert {name: row["status"] for name, row in rows.items()} == {
        "failed": "failed", "finished": "finished", "interrupted": "interrupted", "running": "running",
    }  # fmt: skip
    assert rows["interrupted"]["resume"] == f"mnist-rnn train --resume {root / 'interrupted'}"
    assert rows["finished"]["epochs_done"] == 1 and rows["finished"]["test_accuracy"] is not None
    assert rows["interrupted"]["epochs_done"] == 1 and rows["interrupted"]["epochs_planned"] == 2
    assert rows["finished"]["parameters"] == rows["failed"]["parameters"] > 0
    table = runner.invoke(app, ["runs", "list", str(root), "--sort", "test_accuracy"])
    assert table.exit_code == 0 and table.stdout.index("finished") < table.stdout.index("failed")


def test_runs_compare_lists_exactly_the_keys_that_differ(tmp_path: Path) -> None:
    a = train_run(TINY, tmp_path / "a", "train.epochs=1").run_dir
    b = train_run(TINY, tmp_path / "b", "train.epochs=2", "seed=8").run_dir
    result = runner.invoke(app, ["runs", "compare", str(a), str(b), "--out", str(tmp_path / "cmp"), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["differing"] == {"seed": [7, 8], "train.epochs": [1, 2]}
    assert report["metrics"]["epochs_done"] == [1, 2]
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000


def _corrupt_metrics(tmp: Path) -> list[str]:
    run = train_run(TINY, tmp / "runs" / "r", "train.epochs=1").run_dir
    (run / "metrics.json").write_text("{half a file")
    return ["runs", "list", str(tmp / "runs")]


BAD = {
    "a root with no runs": (lambda t: ["runs", "list", str(t)], "no runs here"),
    "a root that does not exist": (lambda t: ["runs", "list", str(t / "nope")], "no such folder of runs"),
    "compare a folder that is not a run": (
        lambda t: ["runs", "compare", str(t), str(t)],
        "not a run directory",
    ),
    "compare one run": (lambda t: ["runs", "compare", str(t)], "at least two run directories"),
    "a corrupt metrics.json": (_corrupt_metrics, "metrics.json: cannot be read"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    build, expected = BAD[case]
    args = build(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
