"""Full-data training to the accuracy the docs give (from the committed run of the current code,
docs/results/runs/default-quickstart: the README's quick start).
Minutes long: `python -m pytest -m slow`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnist_rnn.cli import app
from tests.conftest import CONFIGS, REPO


@pytest.mark.slow
def test_default_config_reaches_the_documented_accuracy_on_the_real_test_set(tmp_path: Path) -> None:
    run = tmp_path / "default"
    result = CliRunner().invoke(
        app, ["train", "--config", str(CONFIGS / "default.yaml"), "--run-dir", str(run)]
    )
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_samples"] == 10000
    # Equal to the digit on the committed run's CPU kind (AVX-512); another kind or thread count rounds
    # differently, within the tolerance below.
    committed = json.loads((REPO / "docs/results/runs/default-quickstart/metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(committed["test_accuracy"], abs=0.0015), metrics
