"""Run directories: naming, refusal to clobber, atomic writes, checkpoint swap and fallback."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from mnist_rnn import runlock, runs
from mnist_rnn.errors import RunError

NOW = datetime(2026, 1, 2, 3, 4, 5)


def test_run_dir_name_is_timestamp_and_name(tmp_path: Path) -> None:
    assert runs.plan_run_dir(tmp_path, "lstm", None, NOW) == tmp_path / "20260102-030405-lstm"


def test_two_runs_in_the_same_second_get_distinct_dirs(tmp_path: Path) -> None:
    first = runs.create_run_dir(runs.plan_run_dir(tmp_path, "x", None, NOW))
    second = runs.plan_run_dir(tmp_path, "x", None, NOW)
    assert second != first and second.name == "20260102-030405-x-2"


def test_explicit_run_dir_must_be_new_or_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runs.plan_run_dir(tmp_path, "x", empty) == empty
    (empty / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty"):
        runs.plan_run_dir(tmp_path, "x", empty)
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(RunError, match="not a directory"):
        runs.plan_run_dir(tmp_path, "x", afile)
    assert (empty / "keep.txt").read_text() == "mine"


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    runs.atomic_write_json(target, {"a": 1})
    runs.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


class _FakeModel:
    """Stands in for keras.Model.save: writes bytes, optionally failing half-way."""

    def __init__(self, payload: bytes, fail: bool = False) -> None:
        self.payload, self.fail = payload, fail

    def save(self, path: Path) -> None:
        Path(path).write_bytes(self.payload[: len(self.payload) // 2])
        if self.fail:
            raise OSError("disk full")
        Path(path).write_bytes(self.payload)


def test_checkpoint_swap_keeps_the_old_one_when_a_save_fails(tmp_path: Path) -> None:
    runs.create_run_dir(tmp_path)
    runs.save_checkpoint(tmp_path, "last", _FakeModel(b"good" * 100), {"epoch": 1})
    with pytest.raises(OSError):
        runs.save_checkpoint(tmp_path, "last", _FakeModel(b"newer" * 100, fail=True), {"epoch": 2})
    found = runs.find_checkpoint(tmp_path, "last")
    assert (found / runs.MODEL_FILE).read_bytes() == b"good" * 100
    assert json.loads((found / runs.STATE_FILE).read_text()) == {"epoch": 1}


def test_find_checkpoint_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    runs.create_run_dir(tmp_path)
    runs.save_checkpoint(tmp_path, "best", _FakeModel(b"one"), {"epoch": 1})
    # a crash between the two renames of a swap leaves only `best.prev`
    (tmp_path / "checkpoints" / "best").rename(tmp_path / "checkpoints" / "best.prev")
    assert runs.find_checkpoint(tmp_path, "best").name == "best.prev"


def test_missing_checkpoint_and_foreign_dirs_are_run_errors(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no 'best' checkpoint"):
        runs.find_checkpoint(tmp_path, "best")
    with pytest.raises(RunError, match="not a run directory"):
        runs.resolve_run_dir(tmp_path)
    with pytest.raises(RunError, match="no such run directory"):
        runs.resolve_run_dir(tmp_path / "nope")


def test_a_checkpoint_folder_resolves_to_its_run(tmp_path: Path) -> None:
    runs.create_run_dir(tmp_path)
    runs.save_checkpoint(tmp_path, "last", _FakeModel(b"x"), {})
    assert runs.resolve_run_dir(tmp_path / "checkpoints" / "last") == (tmp_path, "last")


def test_history_round_trips_with_empty_cells_for_missing_values(tmp_path: Path) -> None:
    rows = [
        {
            "epoch": 1,
            "loss": 0.5,
            "accuracy": 0.9,
            "val_loss": None,
            "val_accuracy": None,
            "lr": 1e-3,
            "seconds": 2,
        }
    ]
    runs.write_history(tmp_path, rows)
    back = runs.read_history(tmp_path)
    assert back[0]["val_loss"] == "" and back[0]["epoch"] == "1"
    assert list(back[0]) == list(runs.HISTORY_COLUMNS)


def test_run_lock_refuses_a_live_writer_and_takes_over_a_dead_ones(tmp_path: Path) -> None:
    import subprocess
    import sys

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / runlock.LOCK).write_text(str(live.pid))
        refused = pytest.raises(RunError, match=f"another process \\(pid {live.pid}\\) is writing this run")
        with refused, runlock.run_lock(tmp_path):
            pass
    finally:
        live.kill()
        live.wait()
    (tmp_path / runlock.LOCK).write_text(str(live.pid))  # now a dead writer's lock
    with runlock.run_lock(tmp_path):
        assert (tmp_path / runlock.LOCK).read_text() == f"{os.getpid()} {runlock.HOST}"
    assert not (tmp_path / runlock.LOCK).exists()


def test_a_lock_held_on_another_host_is_never_taken_over(tmp_path: Path) -> None:
    # A sweep's folder on a shared filesystem: a PID of another machine says nothing about this one's.
    dead_here = 2**22 + 12345  # above any pid_max: no such process on this host
    (tmp_path / runlock.LOCK).write_text(f"{dead_here} other-machine")
    assert runlock.lock_holder(tmp_path) == dead_here
    assert runs.run_status(tmp_path) is runs.RunStatus.running
    refused = pytest.raises(RunError, match=f"process {dead_here} on host other-machine is writing this run")
    with refused, runlock.run_lock(tmp_path):
        pass
    (tmp_path / runlock.LOCK).write_text(f"{dead_here} {runlock.HOST}")  # the same PID, dead, on this host
    assert runlock.lock_holder(tmp_path) is None


WRITER = r"""
import sys, time
from pathlib import Path
from mnist_rnn import runs

class SlowModel:
    def __init__(self, n): self.n = n
    def save(self, path):
        with open(path, "wb") as f:
            for _ in range(20):
                f.write(bytes([self.n % 256]) * 1000)
                f.flush()
                time.sleep(0.001)

run = Path(sys.argv[1])
(run / "checkpoints").mkdir(parents=True, exist_ok=True)
print("ready", flush=True)
n = 0
while True:
    n += 1
    runs.save_checkpoint(run, "last", SlowModel(n), {"n": n})
"""


def test_kill_during_checkpoint_writes_always_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    """SIGKILL a process that writes checkpoints in a loop, 20 times at random moments; every time the
    checkpoint that find_checkpoint returns is complete and matches its state."""
    import random
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    rng = random.Random(20)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(run)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.03, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        found = runs.find_checkpoint(run, "last")
        n = json.loads((found / runs.STATE_FILE).read_text())["n"]
        assert (found / runs.MODEL_FILE).read_bytes() == bytes([n % 256]) * 20000


def test_command_facts_read_back_what_write_command_wrote(tmp_path: Path) -> None:
    facts = {"tensorflow": "2.21.0", "cpu": "AMD EPYC (AVX2, 2 logical CPUs)", "device": "/CPU:0 (x86_64)"}
    runs.write_command(tmp_path, ["mnist-rnn", "train", "-c", "a: b.yaml"], facts)
    runs.append_command(tmp_path, ["mnist-rnn", "train", "--resume", "x"], "2026-11-26T03:00:00")
    assert runs.read_command_facts(tmp_path) == facts  # neither the command nor a resume line
    assert runs.read_command_facts(tmp_path / "none") == {}


def test_run_status_is_told_from_the_files_alone(tmp_path: Path) -> None:
    run = runs.create_run_dir(tmp_path / "run")
    assert runs.run_status(run) is runs.RunStatus.unsaved  # nothing checkpointed: nothing to resume
    (runs.checkpoint_dir(run, "last.prev")).mkdir()
    (runs.checkpoint_dir(run, "last.prev") / runs.MODEL_FILE).write_bytes(b"")
    assert runs.run_status(run) is runs.RunStatus.interrupted  # a crash between the renames still resumes
    runs.write_status(run, "failed", message="nan")
    assert runs.run_status(run) is runs.RunStatus.failed
    runs.write_metrics(run, {"test_accuracy": 0.5})
    assert runs.run_status(run) is runs.RunStatus.finished
    runs.write_status(run, runs.RunStatus.pruned, message="pruned after epoch 1")
    assert runs.run_status(run) is runs.RunStatus.pruned  # a sweep stopped it: finished, but not to its end
    runs.write_status(run, "finished")
    (run / runlock.LOCK).write_text(str(os.getpid()))  # a live writer
    assert runs.run_status(run) is runs.RunStatus.running
    (run / runlock.LOCK).unlink()
    (run / runs.METRICS).write_text("{damaged")
    with pytest.raises(RunError, match="damaged"):
        runs.run_status(run)
