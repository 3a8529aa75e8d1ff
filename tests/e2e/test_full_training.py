"""Full-data training to the accuracy the README promises. Minutes long: `python -m pytest -m slow`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnist_rnn.cli import app
from tests.conftest import CONFIGS


@pytest.mark.slow
def test_default_config_reaches_98_8_percent_on_the_real_test_set(tmp_path: Path) -> None:
    run = tmp_path / "default"
    result = CliRunner().invoke(
        app, ["train", "--config", str(CONFIGS / "default.yaml"), "--run-dir", str(run)]
    )
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_samples"] == 10000
    assert metrics["test_accuracy"] >= 0.988, metrics
