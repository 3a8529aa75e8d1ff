"""Training on small data through `run_training`: files, learning, determinism, early stop, divergence."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mnist_rnn import runs
from mnist_rnn.cli.app import exit_code
from mnist_rnn.config_files import load_config
from mnist_rnn.data import load_dataset
from mnist_rnn.errors import Interrupted, TrainingError
from mnist_rnn.evaluate import evaluate_run
from mnist_rnn.loop import StopRequest
from tests.conftest import (
    CONFIGS,
    each_once,
    expected_cpu,
    history_without_time,
    tensorboard_scalar_counts,
    train_run,
    trained_weights,
)


def _train(config: Path | dict, run_dir: Path, overrides: tuple[str, ...] = (), **kwargs: Any) -> dict:
    return train_run(config, run_dir, *overrides, **kwargs).metrics


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
    # too short to repay XLA
    assert metrics["execution"] == {"fused": False, "xla": False, "replicas": 1, "shards": 1}
    model_name, vector = expected_cpu()  # the model and its widest vector extension, as lscpu says
    assert metrics["cpu"].startswith(f"{model_name} ({vector}, ")


def test_each_execution_decision_is_made_once_per_run_and_recorded(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run plan: the device, strategy, precision, kernel/XLA and scoring choices are each asked once
    (wherever a module imported them from), and metrics.json and command.txt hold the plan they made."""
    import sys

    from mnist_rnn import distribute, execution

    decisions = ["select_device", "set_cpu_threads", "plan_execution", "plan_scoring", "scoring_shards",
                 "make_strategy", "check_precision", "is_chief"]  # fmt: skip
    calls = {name: 0 for name in decisions}
    for name in decisions:
        original = getattr(execution, name, None) or getattr(distribute, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _original(*args, **kwargs)

        for module in [m for key, m in sys.modules.items() if key.startswith("mnist_rnn")]:
            if getattr(module, name, None) is original:
                monkeypatch.setattr(module, name, counted)
    metrics = _train(tiny_config, tmp_path / "run", ("train.epochs=2",))
    assert calls == {name: 1 for name in decisions}
    assert metrics["plan"] == {
        "device": "/CPU:0", "cpu_threads": 0, "strategy": None, "chief": True, "mixed_precision": False,
        "fused": False, "xla": False, "replicas": 1, "shards": 1, "scoring_xla": True,
        "scoring_shards": execution.scoring_shards(load_config(tiny_config), True),  # AVX-512: per core
    }  # fmt: skip
    command = (tmp_path / "run" / "command.txt").read_text()
    assert "run plan: device /CPU:0, cpu_threads 0, strategy None" in command


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
    assert history_without_time(tmp_path / "a") == history_without_time(tmp_path / "b")
    for wa, wb in zip(trained_weights(tmp_path / "a"), trained_weights(tmp_path / "b"), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_a_different_seed_gives_different_weights(tiny_config: Path, tmp_path: Path) -> None:
    _train(tiny_config, tmp_path / "a", ("train.epochs=1",))
    _train(tiny_config, tmp_path / "b", ("train.epochs=1", "seed=8"))
    assert not np.array_equal(trained_weights(tmp_path / "a")[0], trained_weights(tmp_path / "b")[0])


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
    """The NaN arrives in a run that already has good checkpoints (two finished epochs): the error names
    the batch, and neither checkpoint, the history nor metrics.json takes anything from the bad epoch."""
    from mnist_rnn.config_files import load_config

    run = tmp_path / "run"
    _train(tiny_config, run, ("train.epochs=2",))
    good = {which: trained_weights(run, which) for which in ("last", "best")}
    good_state = runs.read_checkpoint_state(run, "last")
    good_history = runs.read_history(run)
    metrics_before = (run / "metrics.json").read_bytes()

    cfg = load_config(tiny_config, ("train.epochs=3",))
    poisoned = load_dataset(cfg.data, cfg.seed)
    poisoned.train.x[100, 3, 3] = np.nan  # one bad pixel: the epoch's first batch holding image 100
    with pytest.raises(TrainingError, match=r"at epoch 3, batch \d+.*lower train.learning_rate"):
        _train(tiny_config, run, ("train.epochs=3",), resume=True, dataset=poisoned)
    for which, weights in good.items():
        for got, want in zip(trained_weights(run, which), weights, strict=True):
            np.testing.assert_array_equal(got, want)
    assert runs.read_checkpoint_state(run, "last") == good_state
    assert runs.read_history(run) == good_history
    assert (run / "metrics.json").read_bytes() == metrics_before
    status = runs.read_json(run / "status.json")
    assert status["status"] == "failed" and "loss became nan" in status["message"]
    assert all(np.isfinite(w).all() for w in good["last"])


@pytest.mark.parametrize("extend", ["hold", "restart"])
def test_extending_a_finished_cosine_run_follows_lr_extend(
    tiny_config: Path, tmp_path: Path, extend: str
) -> None:
    """The bug this pins: a 2-epoch cosine run resumed with train.epochs=4 used to replan the cosine over
    4 epochs, so the rate jumped back up to 0.5 of its peak. Now the added epochs hold the last planned
    rate (`hold`, the default) or run the schedule again from its peak (`restart`)."""
    run, lr = tmp_path / "run", 0.01
    base = ("train.epochs=2", "train.lr_schedule=cosine", f"train.learning_rate={lr}")
    _train(tiny_config, run, base)
    _train(tiny_config, run, (*base[1:], "train.epochs=4", f"train.lr_extend={extend}"), resume=True)
    rates = [float(row["lr"]) for row in runs.read_history(run)]
    planned = [lr, lr * 0.5]  # cosine over the planned 2 epochs: 1, 0.5 of the peak
    added = [lr * 0.5] * 2 if extend == "hold" else [lr, lr * 0.5]
    assert rates == pytest.approx(planned + added, rel=1e-6)
    assert runs.read_checkpoint_state(run, "last")["schedule"][-1] == [2, 2, extend]


def test_validation_zero_trains_on_everything_and_tracks_training_accuracy(
    tiny_config: Path, tmp_path: Path
) -> None:
    metrics = _train(tiny_config, tmp_path / "run", ("data.validation=0", "train.epochs=1"))
    assert metrics["best_val_accuracy"] is None and metrics["best_epoch"] == 1
    assert runs.read_history(tmp_path / "run")[0]["val_accuracy"] == ""


@pytest.mark.parametrize(
    ("dropout", "per_call"),
    [
        (0.0, 1),
        # The same stop and resume with dropout's seeds and with callbacks every 4th batch: -m slow (the
        # default suite's time; the plain case and tests/e2e/test_resume.py cover the mechanism).
        pytest.param(0.3, 1, marks=pytest.mark.slow),
        pytest.param(0.0, 4, marks=pytest.mark.slow),
    ],
    ids=["plain", "dropout", "4-steps-per-call"],
)
def test_sigterm_mid_epoch_saves_that_step_and_resume_is_exact(
    tiny_config: Path, tmp_path: Path, dropout: float, per_call: int
) -> None:
    overrides = (
        "train.epochs=3", "train.checkpoint_every_steps=4", "model.units=[16,16]", f"model.dropout={dropout}",
        f"train.steps_per_execution={per_call}",
    )  # fmt: skip
    _train(tiny_config, tmp_path / "reference", overrides)

    # A SIGTERM as the batch ending at global step 21 (epoch 2 of 16-batch epochs) finishes: callbacks see
    # every `per_call`-th batch, so training stops at the first one they see at or past step 21.
    run = tmp_path / "cut"
    with pytest.raises(Interrupted) as info:
        _train(tiny_config, run, overrides, stop=StopRequest(after_step=21, injected_signum=signal.SIGTERM))
    stop_step = -(-21 // per_call) * per_call - 16
    assert info.value.signum == signal.SIGTERM and exit_code(info.value) == 143
    assert f"stopped by SIGTERM during epoch 2; checkpoints/last holds epoch 2, batch {stop_step}" in str(
        info.value
    )
    state = runs.read_checkpoint_state(run, "last")
    assert (state["epoch"], state["step"]) == (1, stop_step) and state["metric_state"]

    _train(tiny_config, run, overrides, resume=True)
    assert history_without_time(run) == history_without_time(tmp_path / "reference")
    for got, want in zip(trained_weights(run), trained_weights(tmp_path / "reference"), strict=True):
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
    from mnist_rnn.execution import plan_execution, seed_everything
    from mnist_rnn.loop import compile_model, fit_epoch
    from mnist_rnn.model import build_model, uses_fused_lstm

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
    from mnist_rnn.tensorboard_log import TensorBoardLog

    tb = TensorBoardLog(tmp_path, enabled=True)
    for epoch in (1, 2):
        tb.log(epoch, _row(epoch))
    tb.log(3, _row(3) | {"val_loss": None, "val_accuracy": None})  # killed before validation's flush
    resumed = TensorBoardLog(tmp_path, enabled=True)
    resumed.catch_up([_row(epoch) for epoch in (1, 2, 3)])
    resumed.log(4, _row(4))
    assert tensorboard_scalar_counts(tmp_path / "tensorboard" / "train") == each_once(range(1, 5), TRAIN_TAGS)
    assert tensorboard_scalar_counts(tmp_path / "tensorboard" / "validation") == each_once(
        range(1, 5), VAL_TAGS
    )


def test_tensorboard_catch_up_rewrites_a_scalar_torn_by_a_kill(tmp_path: Path) -> None:
    from mnist_rnn.tensorboard_log import TensorBoardLog, logged_scalars

    tb = TensorBoardLog(tmp_path, enabled=True)
    for epoch in (1, 2):
        tb.log(epoch, _row(epoch, val=False))
    train_dir = tmp_path / "tensorboard" / "train"
    (events,) = train_dir.glob("events.out.tfevents.*")
    events.write_bytes(events.read_bytes()[:-5])  # the last record (epoch 2's learning_rate) is torn
    assert ("learning_rate", 2) not in logged_scalars(train_dir)
    assert ("loss", 2) in logged_scalars(train_dir)
    TensorBoardLog(tmp_path, enabled=True).catch_up([_row(1, val=False), _row(2, val=False)])
    assert tensorboard_scalar_counts(train_dir) == each_once(range(1, 3), TRAIN_TAGS)


def test_augmentation_reaches_the_training_batches_only(tmp_path: Path) -> None:
    """Zero strength trains exactly as no augmentation; a strong one changes training alone: validation
    and the final test score the plain pictures, and the run shows what it did in augment.png."""
    from tests.conftest import TINY

    mnist = {"source": "embedded", "validation": 500, "limit_train": 1024, "limit_test": 500}
    base = {**TINY, "data": mnist, "train": {**TINY["train"], "epochs": 1}}
    _train(base, tmp_path / "plain")
    _train({**base, "data": {**mnist, "augment": {}}}, tmp_path / "zero")
    assert history_without_time(tmp_path / "zero") == history_without_time(tmp_path / "plain")
    for wa, wb in zip(trained_weights(tmp_path / "zero"), trained_weights(tmp_path / "plain"), strict=True):
        np.testing.assert_array_equal(wa, wb)

    strong = {"rotation": 30, "elastic_alpha": 30, "thickness": 1, "blur": 1}
    run = tmp_path / "strong"
    metrics = _train({**base, "data": {**mnist, "augment": strong}}, run)
    row = runs.read_history(run)[-1]
    assert float(row["loss"]) != float(runs.read_history(tmp_path / "plain")[-1]["loss"])
    cfg = load_config(run / "config.yaml")
    data = load_dataset(cfg.data, cfg.seed)
    assert data.train_images is not None
    plain = load_dataset(load_config(tmp_path / "plain" / "config.yaml").data, cfg.seed)
    assert data.val is not None and plain.val is not None
    np.testing.assert_array_equal(data.val.x, plain.val.x)
    model, _ = runs.load_checkpoint(run, "last")
    val_accuracy = float((model.predict(data.val.x, verbose=0).argmax(1) == data.val.y).mean())
    assert float(row["val_accuracy"]) == pytest.approx(val_accuracy, abs=1e-6)
    assert evaluate_run(run)["accuracy"] == metrics["test_accuracy"]
    assert (run / "augment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
