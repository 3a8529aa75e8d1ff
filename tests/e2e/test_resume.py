"""Interrupt a real training process (SIGKILL, SIGTERM, SIGINT) and resume it: the result must equal an
uninterrupted run bit for bit (CPU, dropout 0), history included."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mnist_rnn import runs
from mnist_rnn.errors import RunError
from tests.conftest import TINY, each_once, start_cli, tensorboard_scalar_counts

# Slightly bigger than TINY so that an epoch lasts long enough to be interrupted in the middle of a run.
RESUMABLE = {
    **TINY,
    "data": {**TINY["data"], "limit_train": 3072},
    "model": {"cell": "lstm", "units": [24]},
    "train": {**TINY["train"], "epochs": 8, "learning_rate": 0.005, "checkpoint_every_steps": 5},
    "run": {"tensorboard": True},
}


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def _epochs_done(run: Path) -> int:
    try:
        return len(runs.read_history(run))
    except (OSError, ValueError):
        return 0


def _history_without_time(run: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in runs.read_history(run)]


def _train_and_interrupt(config: Path, run: Path, after_epochs: int, sig: signal.Signals) -> tuple[int, str]:
    """Start `train` on `config` into `run`, send `sig` once `after_epochs` epochs are in its history."""
    proc = start_cli("train", "-c", str(config), "--run-dir", str(run), cwd=config.parent)
    deadline = time.monotonic() + 120
    while _epochs_done(run) < after_epochs and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(sig)
    return _finish(proc)


def _weights(run: Path) -> list[np.ndarray]:
    model, _ = runs.load_checkpoint(run, "last")
    return [np.asarray(w) for w in model.get_weights()]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "resumable.yaml"
    path.write_text(yaml.safe_dump(RESUMABLE))
    return path


@pytest.fixture(scope="module")
def reference(config: Path) -> Path:
    run = config.parent / "uninterrupted"
    code, err = _finish(start_cli("train", "-c", str(config), "--run-dir", str(run), cwd=config.parent))
    assert code == 0, err
    return run


@pytest.mark.parametrize(
    ("sig", "expected_code"),
    [
        (signal.SIGKILL, -signal.SIGKILL),
        # The graceful signals share one handler; SIGTERM is also covered by the fused run's test below
        # and by tests/component/test_training.py, so these two run with -m slow.
        pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow),
        pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow),
    ],
    ids=["SIGKILL", "SIGTERM", "SIGINT"],
)
def test_interrupted_then_resumed_equals_uninterrupted(
    config: Path, reference: Path, sig, expected_code
) -> None:
    run = config.parent / f"cut-{sig.name}"
    kill_after = random.Random(sig).randint(1, 4)  # epochs finished before the signal: a random point
    code, err = _train_and_interrupt(config, run, kill_after, sig)
    assert code == expected_code, err
    if sig != signal.SIGKILL:
        assert f"resume with: mnist-rnn train --resume {run}" in err
        assert "Traceback" not in err
    assert _epochs_done(run) < RESUMABLE["train"]["epochs"]

    code, err = _finish(start_cli("train", "--resume", str(run), cwd=config.parent))
    assert code == 0, err
    assert _history_without_time(run) == _history_without_time(reference)
    for got, want in zip(_weights(run), _weights(reference), strict=True):
        np.testing.assert_array_equal(got, want)
    assert "resumed" in (run / "command.txt").read_text()
    epochs = range(1, RESUMABLE["train"]["epochs"] + 1)  # no gap, no repeat, in either log
    tensorboard = run / "tensorboard"
    assert tensorboard_scalar_counts(tensorboard / "train") == each_once(
        epochs, ("loss", "accuracy", "learning_rate")
    )
    assert tensorboard_scalar_counts(tensorboard / "validation") == each_once(epochs, ("loss", "accuracy"))


def _reference_run(cfg: dict, folder: Path, name: str) -> tuple[Path, Path, Path]:
    """Write `cfg` as `name`.yaml in `folder` and train it uninterrupted: (config, reference run, the
    path for the run to cut)."""
    config = folder / f"{name}.yaml"
    config.write_text(yaml.safe_dump(cfg))
    reference = folder / "uninterrupted"
    code, err = _finish(start_cli("train", "-c", str(config), "--run-dir", str(reference), cwd=folder))
    assert code == 0, err
    return config, reference, folder / "cut"


def _mid_epoch_step(run: Path) -> int:
    try:
        return int(runs.read_checkpoint_state(run, "last").get("step", 0))
    except RunError:  # not written yet, or being replaced
        return 0


def test_augmented_training_killed_mid_epoch_resumes_bit_for_bit(tmp_path: Path) -> None:
    """data.augment draws from (seed, epoch, batch): a run SIGKILLed after a mid-epoch checkpoint and
    resumed from it equals the uninterrupted run, weights and history."""
    augment = {"rotation": 10, "translate": 2, "elastic_alpha": 20, "thickness": 0.5, "blur": 0.5}
    cfg = {
        **RESUMABLE,
        "data": {**RESUMABLE["data"], "augment": augment},
        "train": {**RESUMABLE["train"], "epochs": 3},
    }
    config, reference, run = _reference_run(cfg, tmp_path, "augmented")
    proc = start_cli("train", "-c", str(config), "--run-dir", str(run), cwd=tmp_path)
    deadline = time.monotonic() + 120
    while _mid_epoch_step(run) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "training finished before a mid-epoch checkpoint"
    proc.send_signal(signal.SIGKILL)
    code, _ = _finish(proc)
    assert code == -signal.SIGKILL and _mid_epoch_step(run) > 0

    code, err = _finish(start_cli("train", "--resume", str(run), cwd=tmp_path))
    assert code == 0, err
    assert _history_without_time(run) == _history_without_time(reference)
    for got, want in zip(_weights(run), _weights(reference), strict=True):
        np.testing.assert_array_equal(got, want)


def test_resume_refuses_a_changed_config_and_a_finished_run(config: Path, reference: Path) -> None:
    code, err = _finish(
        start_cli("train", "--resume", str(reference), "--set", "model.units=[8]", cwd=config.parent)
    )
    assert code == 2 and "differs from the run's saved config in model.units" in err
    code, err = _finish(start_cli("train", "--resume", str(reference), cwd=config.parent))
    assert code == 2 and "already finished 8 of 8 epochs" in err


@pytest.mark.slow  # about 80 s of CLI processes; SIGTERM and SIGKILL resumes stay in the default suite
def test_fused_lstm_run_resumes_bit_for_bit_and_scores_and_exports(tmp_path: Path) -> None:
    """The fused LSTM under XLA (the default CPU path of long runs): a SIGTERM'd, resumed run equals an
    uninterrupted one; eval loads its checkpoint; the export holds stock Keras layers with its weights."""
    import keras

    from mnist_rnn.artefacts import load_artefact
    from mnist_rnn.config_files import load_config
    from mnist_rnn.data import load_dataset
    from mnist_rnn.evaluate import evaluate_run

    # Two shards whatever this machine's cores: the sharded step (the default on 2 cores) resumes exactly.
    cfg = {
        **RESUMABLE,
        "model": {**RESUMABLE["model"], "lstm_kernel": "fused"},
        "train": {**RESUMABLE["train"], "batch_shards": 2},
    }
    config, reference, run = _reference_run(cfg, tmp_path, "fused")
    code, err = _train_and_interrupt(config, run, 2, signal.SIGTERM)
    assert code == 143, err
    code, err = _finish(start_cli("train", "--resume", str(run), cwd=tmp_path))
    assert code == 0, err
    assert "fused LSTM kernel, XLA on, batch in 2 concurrent shards" in err  # the checkpoint's kernel
    assert _history_without_time(run) == _history_without_time(reference)
    for got, want in zip(_weights(run), _weights(reference), strict=True):
        np.testing.assert_array_equal(got, want)

    report = evaluate_run(run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert report["accuracy"] == metrics["test_accuracy"]
    assert metrics["execution"] == {"fused": True, "xla": True, "replicas": 1, "shards": 2}
    out = tmp_path / "exp"
    code, err = _finish(start_cli("export", str(run), "--format", "keras", "--out", str(out), cwd=tmp_path))
    assert code == 0, err  # export also checks the artefact against the trained model (exit 1 if not)
    kinds = {type(layer).__name__ for layer in keras.saving.load_model(out / "model.keras").layers}
    assert "LSTM" in kinds and "FusedLSTM" not in kinds  # stock layers: loads without mnist-rnn
    manifest, predictor = load_artefact(out)
    assert manifest["format"] == "keras"
    cfg = load_config(run / "config.yaml")
    test = load_dataset(cfg.data, cfg.seed).test
    served = predictor(test.x)  # the artefact, in its own runtime, on the run's whole test split
    assert float((served.argmax(1) == test.y).mean()) == manifest["test_accuracy"]
    assert abs(manifest["test_accuracy"] - report["accuracy"]) <= 2 / len(test)  # stock vs fused rounding
