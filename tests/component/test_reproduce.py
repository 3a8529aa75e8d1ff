"""scripts/reproduce.py: a budget stops a run at an epoch end, a second call resumes it, and every figure
in the table comes from the run's own files."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import TINY, load_script


def test_a_budget_stops_at_an_epoch_end_and_the_next_call_resumes(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump({**TINY, "train": {**TINY["train"], "epochs": 3, "lr_schedule": "none"}})
    )
    reproduce, root = load_script("reproduce"), tmp_path / "runs"
    rows = reproduce.main([str(config), "--root", str(root), "--budget-minutes", "0"])
    assert [r["epochs"] for r in rows] == ["1 of 3"]  # stopped at the first epoch end past the budget
    rows = reproduce.main([str(config), "--root", str(root), "--record", str(tmp_path / "record")])
    metrics = json.loads((root / "tiny" / "metrics.json").read_text())
    history = (root / "tiny" / "history.csv").read_text().splitlines()
    assert rows[0]["epochs"] == "3 of 3" and [line.split(",")[0] for line in history[1:]] == ["1", "2", "3"]
    assert rows[0]["test_accuracy"] == metrics["test_accuracy"]
    assert rows[0]["parameters"] == json.loads((root / "tiny" / "status.json").read_text())["parameters"]
    recorded = tmp_path / "record"
    assert json.loads((recorded / "runs" / "tiny" / "metrics.json").read_text()) == metrics
    assert f"{metrics['test_accuracy']:.2%}" in (recorded / "table.md").read_text()


def test_a_hard_budget_stops_inside_an_epoch_and_scores_the_last_checkpoint(tmp_path: Path) -> None:
    # 640 batches of 64 an epoch through LSTM(128), one per call: 10-20 s, well past a 6 s budget, which
    # start-up and the first batches fit in (a stop before any batch has nothing to save or score)
    config = tmp_path / "tiny.yaml"
    tiny = {
        **TINY, "model": {"cell": "lstm", "units": [128]},
        "data": {**TINY["data"], "limit_train": 40960}, "train": {**TINY["train"], "epochs": 2},
    }  # fmt: skip
    config.write_text(yaml.safe_dump({**tiny, "train": {**tiny["train"], "steps_per_execution": 1}}))
    reproduce, root = load_script("reproduce"), tmp_path / "runs"
    (row,) = reproduce.main([str(config), "--root", str(root), "--hard-budget-minutes", "0.1"])
    run = root / "tiny"
    state = json.loads((run / "checkpoints" / "last" / "state.json").read_text())
    assert state["epoch"] == 0 and 0 < state["step"] < 640  # stopped inside the first epoch
    assert row["epochs"] == f"0 of 2, + {state['step']} of 640 batches (stopped)"
    evaluated = json.loads((run / "eval.json").read_text())
    assert evaluated["checkpoint"] == "last" and row["test_accuracy"] == evaluated["accuracy"]
    assert json.loads((run / "status.json").read_text())["status"] == "interrupted"
    assert not (run / "metrics.json").exists()


def test_recording_some_configs_keeps_the_recorded_rows_of_the_others(tmp_path: Path) -> None:
    reproduce = load_script("reproduce")
    table = tmp_path / "table.md"
    header = "| task | config | x |\n|---|---|---|\n"
    table.write_text(
        header + "| row MNIST | `row_lstm` | old |\n| pixel MNIST | `pixel_lstm` | kept |\n"
        "| row MNIST | `row_gru` | old too |\n"
    )
    new = header + "| row MNIST | `row_lstm` | new |"
    merged = reproduce.merged_table(table, [{"config": "row_lstm"}], new).splitlines()
    assert merged[2:] == [
        "| row MNIST | `row_lstm` | new |",
        "| row MNIST | `row_gru` | old too |",  # not run this time: kept, with its task
        "| pixel MNIST | `pixel_lstm` | kept |",
    ]
    assert reproduce.merged_table(tmp_path / "none.md", [], new) == new


def test_a_run_ended_by_early_stopping_says_so_in_the_table(tmp_path: Path) -> None:
    # a learning rate this small cannot move validation accuracy: patience 1 ends the run after epoch 2
    cfg = {
        **TINY,
        "train": {**TINY["train"], "epochs": 5, "learning_rate": 1e-9, "early_stopping_patience": 1},
    }
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    (row,) = load_script("reproduce").main([str(config), "--root", str(tmp_path / "runs")])
    assert row["epochs"] == "2 of 5 (early stopping)"
