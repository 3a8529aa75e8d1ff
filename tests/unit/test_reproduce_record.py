"""scripts/reproduce.py --record: the recorded files of a config are its latest run's, none left over."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import load_script


def test_recording_a_run_again_drops_files_the_new_run_does_not_have(tmp_path: Path) -> None:
    reproduce = load_script("reproduce")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    folder = tmp_path / "results"
    stale = folder / "runs" / "pixel_lstm" / "eval.json"  # from an earlier run stopped inside an epoch
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    table = "| task | config |\n|---|---|\n| pixel MNIST | `pixel_lstm` |"
    reproduce.record([{"config": "pixel_lstm", "run": str(run)}], folder, table)
    assert (folder / "runs" / "pixel_lstm" / "metrics.json").is_file()
    assert not stale.exists()
