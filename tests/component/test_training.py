"""Training on small data through `train.train`: files, learning, determinism, early stop, divergence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from mnist_rnn import runs
from mnist_rnn.config import load_config
from mnist_rnn.data import load_dataset
from mnist_rnn.errors import TrainingError
from mnist_rnn.evaluate import evaluate_run
from tests.conftest import CONFIGS, each_once, tensorboard_scalar_counts


def _train(config: Path, run_dir: Path, overrides: tuple[str, ...] = ()) -> dict:
    from mnist_rnn.train import select_device, train

    cfg = load_config(config, overrides)
    runs.create_run_dir(run_dir)
    dataset = load_dataset(cfg.data, cfg.seed)
    return train(cfg, dataset, run_dir, select_device(cfg.train.device), Console(quiet=True))


def _weights(run_dir: Path, which: str) -> list[np.ndarray]:
    model, _ = runs.load_checkpoint(run_dir, which)
    return [np.asarray(w) for w in model.get_weights()]


def test_training_learns_and_writes_the_run(tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    metrics = _train(tiny_config, run, ("train.epochs=5",))
    history = runs.read_history(run)
    assert [int(r["epoch"]) for r in history] == [1, 2, 3, 4, 5]
    assert float(history[-1]["val_accuracy"]) > 0.95  # the synthetic classes are easy
    assert float(history[-1]["loss"]) < float(history[0]["loss"])
    val_acc = [float(r["val_accuracy"]) for r in history]
    assert metrics["best_epoch"] == int(np.argmax(val_acc)) + 1
    assert metrics["best_val_accuracy"] == pytest.approx(max(val_acc))
    assert (
        json.loads((run / "checkpoints" / "best" / "state.json").read_text())["epoch"]
        == metrics["best_epoch"]
    )
    assert load_config(run / "config.yaml") == load_config(tiny_config, ("train.epochs=5",))
    assert metrics["execution"] == {"fused": False, "xla": False}  # too short a run to repay XLA's compile


def test_eval_agrees_with_the_metrics_of_training(tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    metrics = _train(tiny_config, run)
    report = evaluate_run(run, "best", "test")
    assert report["accuracy"] == metrics["test_accuracy"]
    assert report["loss"] == pytest.approx(metrics["test_loss"], rel=1e-6)
    assert sum(map(sum, report["confusion_matrix"])) == metrics["test_samples"] == 256


@pytest.mark.parametrize("jit", ["auto", "on"], ids=["default", "xla"])
def test_same_seed_gives_identical_history_and_weights(tiny_config: Path, tmp_path: Path, jit: str) -> None:
    # With XLA the TF op-determinism switch is off (Keras would disable XLA): XLA on CPU must hold alone.
    _train(tiny_config, tmp_path / "a", (f"train.jit_compile={jit}",))
    _train(tiny_config, tmp_path / "b", (f"train.jit_compile={jit}",))
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in runs.read_history(tmp_path / "a")]
    assert strip == [
        {k: v for k, v in row.items() if k != "seconds"} for row in runs.read_history(tmp_path / "b")
    ]
    for wa, wb in zip(_weights(tmp_path / "a", "last"), _weights(tmp_path / "b", "last"), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_a_different_seed_gives_different_weights(tiny_config: Path, tmp_path: Path) -> None:
    _train(tiny_config, tmp_path / "a", ("train.epochs=1",))
    _train(tiny_config, tmp_path / "b", ("train.epochs=1", "seed=8"))
    assert not np.array_equal(_weights(tmp_path / "a", "last")[0], _weights(tmp_path / "b", "last")[0])


def test_early_stopping_stops_when_validation_stalls(tiny_config: Path, tmp_path: Path) -> None:
    # A learning rate this small cannot change validation accuracy, so epoch 2 is not an improvement.
    metrics = _train(
        tiny_config,
        tmp_path / "run",
        (
            "train.epochs=5",
            "train.learning_rate=1e-12",
            "train.lr_schedule=none",
            "train.early_stopping_patience=1",
        ),
    )
    assert metrics["stopped_early"] and metrics["epochs_run"] == 2 and metrics["best_epoch"] == 1


def test_non_finite_loss_stops_with_a_training_error_and_keeps_the_good_checkpoint(
    tiny_config: Path, tmp_path: Path
) -> None:
    from mnist_rnn.train import select_device, train

    cfg = load_config(tiny_config, ("train.epochs=3",))
    dataset = load_dataset(cfg.data, cfg.seed)
    run = runs.create_run_dir(tmp_path / "run")
    train(cfg, dataset, run, select_device(cfg.train.device), Console(quiet=True))
    good = _weights(run, "last")
    dataset.train.x[100, 3, 3] = np.nan  # one bad pixel in batch 2 (batch size 64, shuffled order aside)
    run2 = runs.create_run_dir(tmp_path / "run2")
    with pytest.raises(TrainingError, match=r"at epoch 1, batch \d+.*lower train.learning_rate"):
        train(cfg, dataset, run2, select_device(cfg.train.device), Console(quiet=True))
    assert not (run2 / "checkpoints" / "last").exists()  # nothing saved from a NaN epoch
    assert all(np.isfinite(w).all() for w in good)


def test_validation_zero_trains_on_everything_and_tracks_training_accuracy(
    tiny_config: Path, tmp_path: Path
) -> None:
    metrics = _train(tiny_config, tmp_path / "run", ("data.validation=0", "train.epochs=1"))
    assert metrics["best_val_accuracy"] is None and metrics["best_epoch"] == 1
    assert runs.read_history(tmp_path / "run")[0]["val_accuracy"] == ""


def _history_without_time(run: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in runs.read_history(run)]


@pytest.mark.parametrize(
    ("dropout", "per_call"), [(0.0, 1), (0.3, 1), (0.0, 4)], ids=["plain", "dropout", "4-steps-per-call"]
)
def test_sigterm_mid_epoch_saves_that_step_and_resume_is_exact(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dropout: float, per_call: int
) -> None:
    import os
    import signal

    from mnist_rnn import train as train_module
    from mnist_rnn.errors import Interrupted

    overrides = (
        "train.epochs=3", "train.checkpoint_every_steps=4", "model.units=[16,16]", f"model.dropout={dropout}",
        f"train.steps_per_execution={per_call}",
    )  # fmt: skip
    _train(tiny_config, tmp_path / "reference", overrides)

    # Deliver SIGTERM to ourselves at the first batch end at or past global step 21 (epoch 2 of 16-batch
    # epochs); the call in flight finishes, so training stops one call later and saves exactly there.
    real_due = train_module._CheckpointClock.due
    sent: list[int] = []

    def due(self, global_step: int) -> bool:
        if global_step >= 21 and not sent:
            sent.append(global_step)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_due(self, global_step)

    monkeypatch.setattr(train_module._CheckpointClock, "due", due)
    run = tmp_path / "cut"
    with pytest.raises(Interrupted) as info:
        _train(tiny_config, run, overrides)
    stop_step = sent[0] + per_call - 16  # one call after the signal, within epoch 2
    assert info.value.exit_code == 143
    assert f"checkpoints/last holds epoch 2, batch {stop_step}" in str(info.value)
    state = runs.read_checkpoint_state(run, "last")
    assert (state["epoch"], state["step"]) == (1, stop_step) and state["metric_state"]
    monkeypatch.setattr(train_module._CheckpointClock, "due", real_due)

    from mnist_rnn.train import select_device, train

    cfg = load_config(tiny_config, overrides)
    train(cfg, load_dataset(cfg.data, cfg.seed), run, select_device("cpu"), Console(quiet=True), resume=True)
    assert _history_without_time(run) == _history_without_time(tmp_path / "reference")
    for got, want in zip(_weights(run, "last"), _weights(tmp_path / "reference", "last"), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_corrupt_last_checkpoint_falls_back_to_the_previous_one(tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train(tiny_config, run, ("train.epochs=2",))
    model_file = run / "checkpoints" / "last" / "model.keras"
    model_file.write_bytes(model_file.read_bytes()[:800])  # what a kill during a naive save leaves
    warnings: list[str] = []
    _, state = runs.load_checkpoint(run, "last", warn=warnings.append)
    assert state["epoch"] == 1  # the previous checkpoint
    assert len(warnings) == 1 and "using the previous one" in warnings[0]


def test_fast_path_gives_the_plain_path_loss_on_the_same_batches() -> None:
    """The default CPU path (fused LSTM + XLA + several steps per call) vs Keras's LSTM without XLA, one
    step per call: same losses and weights to 1e-5 on the same 8 batches."""
    import keras

    from mnist_rnn.config import Config, LstmKernel, ModelConfig, TrainConfig
    from mnist_rnn.model import build_model, uses_fused_lstm
    from mnist_rnn.train import compile_model, fit_epoch, plan_execution, seed_everything

    seed_everything(3, deterministic=True, jit_compile=True)  # as train() does for this path
    data = load_dataset(load_config(CONFIGS / "smoke.yaml").data, seed=0)
    x, y = data.train.x[:1024], data.train.y[:1024]
    keras.utils.set_random_seed(3)
    start = build_model(ModelConfig(units=(32, 32)), (28, 28)).get_weights()
    losses, weights = {}, {}
    fast = plan_execution(Config(model=ModelConfig(units=(32, 32))), "/CPU:0")
    assert fast.fused and fast.xla  # what `auto` picks for a stateless row LSTM on a CPU
    paths = {
        "fast": (ModelConfig(units=(32, 32)), TrainConfig(), fast),
        "plain": (
            ModelConfig(units=(32, 32), lstm_kernel=LstmKernel.keras),
            TrainConfig(jit_compile="off", steps_per_execution=1),
            None,
        ),
    }
    assert paths["fast"][1].steps_per_execution > 1  # several steps per call is the default
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # Keras warns when it drops XLA
        warnings.simplefilter("always")
        for name, (mcfg, tcfg, execution) in paths.items():
            model = build_model(mcfg, (28, 28), fused=execution is not None)
            assert uses_fused_lstm(model) == (execution is not None)
            model.set_weights(start)
            compile_model(model, tcfg, xla=execution is not None)
            per_batch = []
            for i in range(0, 512, 64):  # 8 batches, one at a time, so each loss is that batch's own
                per_batch.append(fit_epoch(model, x[i : i + 64], y[i : i + 64], 64, "/CPU:0")["loss"][-1])
            losses[name], weights[name] = np.array(per_batch), model.get_weights()
    np.testing.assert_allclose(losses["fast"], losses["plain"], atol=1e-5)
    for a, b in zip(weights["fast"], weights["plain"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert not any(isinstance(w.message, UserWarning) and "jit_compile" in str(w.message) for w in caught)


def _row(epoch: int, val: bool = True) -> dict:
    return {
        "epoch": epoch, "loss": 1.0 / epoch, "accuracy": 0.9, "lr": 1e-3,
        "val_loss": 0.5 / epoch if val else None, "val_accuracy": 0.8 if val else None, "seconds": 1.0,
    }  # fmt: skip


TRAIN_TAGS, VAL_TAGS = ("loss", "accuracy", "learning_rate"), ("loss", "accuracy")


def test_tensorboard_catch_up_logs_each_epoch_once_whatever_a_kill_left_behind(tmp_path: Path) -> None:
    """The window that once repeated an epoch: a kill after the events of epoch 3 were flushed but
    before anything else recorded it. Resuming from a checkpoint whose history has epochs 1-3 must
    log none of them again, and must still log what is missing: here epoch 3 of validation."""
    from mnist_rnn.train import _TensorBoard

    tb = _TensorBoard(tmp_path, enabled=True)
    for epoch in (1, 2):
        tb.log(epoch, _row(epoch))
    tb.log(3, _row(3) | {"val_loss": None, "val_accuracy": None})  # killed before validation's flush
    resumed = _TensorBoard(tmp_path, enabled=True)
    resumed.catch_up([_row(epoch) for epoch in (1, 2, 3)])
    resumed.log(4, _row(4))
    assert tensorboard_scalar_counts(tmp_path / "tensorboard" / "train") == each_once(range(1, 5), TRAIN_TAGS)
    assert tensorboard_scalar_counts(tmp_path / "tensorboard" / "validation") == each_once(
        range(1, 5), VAL_TAGS
    )


def test_tensorboard_catch_up_rewrites_a_scalar_torn_by_a_kill(tmp_path: Path) -> None:
    from mnist_rnn.train import _TensorBoard, logged_scalars

    tb = _TensorBoard(tmp_path, enabled=True)
    for epoch in (1, 2):
        tb.log(epoch, _row(epoch, val=False))
    train_dir = tmp_path / "tensorboard" / "train"
    (events,) = train_dir.glob("events.out.tfevents.*")
    events.write_bytes(events.read_bytes()[:-5])  # the last record (epoch 2's learning_rate) is torn
    assert ("learning_rate", 2) not in logged_scalars(train_dir)
    assert ("loss", 2) in logged_scalars(train_dir)
    _TensorBoard(tmp_path, enabled=True).catch_up([_row(1, val=False), _row(2, val=False)])
    assert tensorboard_scalar_counts(train_dir) == each_once(range(1, 3), TRAIN_TAGS)
