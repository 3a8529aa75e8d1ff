"""scripts/ab_runs.py trains A and B as separate processes, each with its own settings and
environment, and reports both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mnist_rnn.cpu import planned_xla_flags
from tests.conftest import REPO, expected_cpu, load_script

NARROW = "--xla_cpu_prefer_vector_width=256"


@pytest.mark.slow  # the default suite stays under about 10 minutes on 2 cores; run with -m slow
def test_ab_runs_trains_each_side_with_its_settings(tmp_path: Path) -> None:
    out = tmp_path / "ab.json"
    report = load_script("ab_runs").main([
        str(REPO / "configs" / "smoke.yaml"), "--set", "train.epochs=2", "--a", "train.cpu_threads=1",
        "--a-env", f"XLA_FLAGS={NARROW}", "--reps", "1", "--out", str(out),
    ])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    (a,), (b,) = report["runs"]["A"], report["runs"]["B"]
    assert a["applied"] == {"train.epochs": 2, "train.cpu_threads": 1}
    assert b["applied"] == {"train.epochs": 2}
    # A's environment reached its process, as its command.txt records; B's flags are the plan's own
    assert (a["xla_flags"], b["xla_flags"]) == (NARROW, planned_xla_flags("") or "none")
    for run in (a, b):
        assert run["later_epoch_s"] > 0 and run["user_s"] > 0 and 0 < run["system_share"] < 1
        assert run["test_accuracy"] > 0.7  # two real epochs of the smoke config, each side really trained
    # one setting apart (threads per op): the same training up to summation order in the last digits
    assert abs(a["test_accuracy"] - b["test_accuracy"]) <= 0.01
    assert report["epoch_time_ratio_b_over_a"] == b["later_epoch_s"] / a["later_epoch_s"]
    paired = report["paired"]["epoch_time_b_over_a"]  # one later epoch each: one pair, its own ratio
    assert paired["pairs"] == 1 and paired["median"] == b["epoch_s"][1] / a["epoch_s"][1]
    assert report["paired"]["cpu_time_b_over_a"]["pairs"] == 1
    model_name, vector = expected_cpu()
    assert report["machine"]["cpu"].startswith(f"{model_name} ({vector}, ")
