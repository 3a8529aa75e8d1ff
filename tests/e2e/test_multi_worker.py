"""`train.strategy: multi_worker` with two real worker processes on this machine (TF_CONFIG on free
localhost ports): one run directory written by the chief, the same final weights on both workers, the
accuracy of a single process; and a worker killed mid-epoch: the other fails with a message within 60 s,
and `--resume` of both finishes the run. Marked slow (each test trains twice); .ci/run runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CONFIGS, REPO, start_cli

pytestmark = pytest.mark.slow

SMOKE_2 = ["--config", str(CONFIGS / "smoke.yaml"), "--set", "train.epochs=2"]
MULTI = ["--set", "train.strategy=multi_worker"]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _workers(args: list[str], cwd: Path, ports: list[int]) -> list[subprocess.Popen[str]]:
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for index in range(len(ports)):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "TF_CONFIG": tf_config}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "mnist_rnn", "train", *args],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    return procs


def _finish(procs: list[subprocess.Popen[str]], timeout: float = 600) -> list[tuple[int, str]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append((proc.returncode, out + err))
    return results


def _wait_for_checkpoint(run: Path, chief: subprocess.Popen[str], ready: Callable[[dict], bool]) -> None:
    deadline, path = time.monotonic() + 300, run / "checkpoints" / "last" / "state.json"
    while True:
        assert time.monotonic() < deadline and chief.poll() is None, "no such checkpoint was written"
        try:
            if ready(json.loads(path.read_text())):
                return
        except (OSError, ValueError):  # not written yet, or being replaced
            pass
        time.sleep(0.1)


def _digest(output: str) -> str:
    found = re.search(r"final weights sha256: ([0-9a-f]{64})", output)
    assert found, output[-2000:]
    return found.group(1)


def test_two_workers_train_one_run_with_equal_weights(tmp_path: Path) -> None:
    run = tmp_path / "run"
    results = _finish(_workers([*SMOKE_2, *MULTI, "--run-dir", str(run)], tmp_path, _free_ports(2)))
    for code, output in results:
        assert code == 0, output[-3000:]
    assert _digest(results[0][1]) == _digest(results[1][1])  # every replica ends with the same weights
    # the chief (worker 0) wrote the one run directory, the other worker nothing anywhere under tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["execution"]["replicas"] == 2
    assert "multi_worker" in (run / "config.yaml").read_text()
    # an ordinary run to score on one process, without TF_CONFIG
    scored = start_cli("eval", str(run), cwd=tmp_path)
    _, err = scored.communicate(timeout=300)
    assert scored.returncode == 0, err[-2000:]
    assert json.loads((run / "eval.json").read_text())["accuracy"] == pytest.approx(metrics["test_accuracy"])
    single = _finish([subprocess.Popen(
        [sys.executable, "-m", "mnist_rnn", "train", *SMOKE_2, "--run-dir", str(tmp_path / "single")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )])  # fmt: skip
    assert single[0][0] == 0, single[0][1][-2000:]
    alone = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert abs(metrics["test_accuracy"] - alone["test_accuracy"]) <= 0.005


def test_a_killed_worker_fails_the_other_with_a_message_and_both_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*SMOKE_2, *MULTI, "--set", "train.checkpoint_every_steps=10", "--run-dir", str(run)]
    chief, other = _workers(args, tmp_path, _free_ports(2))
    _wait_for_checkpoint(run, chief, lambda state: state.get("step", 0) > 0)  # inside an epoch
    other.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    out, err = chief.communicate(timeout=120)
    assert time.monotonic() - killed_at <= 60
    assert chief.returncode != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: the cluster lost a worker") and "--resume" in last, err[-2000:]
    assert "Traceback" not in err
    other.communicate()
    resumed = _finish(_workers(["--resume", str(run)], tmp_path, _free_ports(2)))
    for code, output in resumed:
        assert code == 0, output[-3000:]
    assert _digest(resumed[0][1]) == _digest(resumed[1][1])
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2


def test_a_stop_asked_of_one_worker_stops_both_at_the_same_batch(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*SMOKE_2, *MULTI, "--set", "train.checkpoint_every_steps=10", "--run-dir", str(run)]
    chief, other = _workers(args, tmp_path, _free_ports(2))
    _wait_for_checkpoint(run, chief, lambda state: state.get("epoch") == 1 and state.get("step", 0) > 0)
    other.send_signal(signal.SIGTERM)  # the non-chief is asked; the chief must stop with it
    results = _finish([chief, other], timeout=120)
    assert [code for code, _ in results] == [128 + signal.SIGTERM] * 2, [o[-1500:] for _, o in results]
    # Each worker says where its own checkpoint stands (the other writes into a scratch copy): the same
    # batch on both, and the chief's is the one in the run directory.
    held = [re.findall(r"checkpoints/last holds (epoch \d+(?:, batch \d+)?);", out) for _, out in results]
    assert all(len(h) == 1 for h in held) and held[0] == held[1], held
    state = json.loads((run / "checkpoints" / "last" / "state.json").read_text())
    assert held[0][0] == (
        f"epoch {state['epoch'] + 1}, batch {state['step']}" if state["step"] else f"epoch {state['epoch']}"
    )
    resumed = _finish(_workers(["--resume", str(run)], tmp_path, _free_ports(2)))
    assert [code for code, _ in resumed] == [0, 0], [o[-1500:] for _, o in resumed]
    assert _digest(resumed[0][1]) == _digest(resumed[1][1])
