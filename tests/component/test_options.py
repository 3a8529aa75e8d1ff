"""Options that had no test of their own: `train.chunk_loss: last_chunk`, `train.reset_states: never | N`,
`train.checkpoint_every_minutes`, and the columns layout, simple_rnn, bidirectional and projection each
through training and export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_rnn import artefacts, export, runs
from mnist_rnn.config import TrainConfig
from mnist_rnn.config_files import load_config
from mnist_rnn.data import load_dataset
from mnist_rnn.loop import CheckpointClock, epoch_batches
from mnist_rnn.trained import keras_predict
from tests.component.test_stateful import STATEFUL
from tests.conftest import TINY, history_without_time, train_run


def test_last_chunk_scores_only_each_images_last_chunk() -> None:
    x = np.arange(6 * 4 * 1, dtype=np.float32).reshape(6, 4, 1)  # 6 images of 4 steps
    y = np.arange(6, dtype=np.int32)
    cfg = {"stateful": True, "batch_size": 2}
    order = np.arange(6)
    _, ys, every = epoch_batches(x, y, order, TrainConfig(**cfg), chunk_steps=2)
    _, _, last = epoch_batches(x, y, order, TrainConfig(**cfg, chunk_loss="last_chunk"), chunk_steps=2)
    # 3 groups of 2 images, 2 chunks each: batches (chunk 0 of images 0-1), (chunk 1 of 0-1), ...
    assert ys.tolist() == [0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5]
    assert every is not None and every.tolist() == [1.0] * 12
    assert last is not None and last.tolist() == [0, 0, 1, 1] * 3


def test_last_chunk_trains_differently_from_every_chunk(tmp_path: Path) -> None:
    chunked = {**STATEFUL, "data": {**STATEFUL["data"], "limit_train": 256, "chunk_steps": 7}}
    chunked["train"] = {**STATEFUL["train"], "epochs": 1}
    every = history_without_time(train_run(chunked, tmp_path / "every").run_dir)
    last = history_without_time(train_run(chunked, tmp_path / "last", "train.chunk_loss=last_chunk").run_dir)
    # the same batches; a loss that counts only the last chunk is another number from the first batch on
    assert float(every[0]["loss"]) != pytest.approx(float(last[0]["loss"]), rel=1e-3)


def _carried(run_dir: Path) -> list[np.ndarray]:
    """The carried state (h, c) that checkpoints/last holds at the end of the run."""
    state = runs.read_json(run_dir / "checkpoints" / "last" / "state.json")
    return [np.asarray(v) for v in state["rnn_state"]]


def test_reset_states_every_n_batches_leaves_zero_state_after_a_reset(tmp_path: Path) -> None:
    # 640 training images: 10 batches of 64 per epoch, counted from each epoch's start
    one_epoch = "train.epochs=1"
    every_five = _carried(train_run(STATEFUL, tmp_path / "n5", one_epoch, "train.reset_states=5").run_dir)
    every_four = _carried(train_run(STATEFUL, tmp_path / "n4", one_epoch, "train.reset_states=4").run_dir)
    assert len(every_five) == 2 and all(not s.any() for s in every_five)  # batch 10 of 10 was a reset
    assert all(s.any() for s in every_four)  # batch 10: two batches after the reset at batch 8


def test_reset_states_never_carries_state_into_the_next_epoch(tmp_path: Path) -> None:
    by_epoch = history_without_time(train_run(STATEFUL, tmp_path / "epoch").run_dir)
    never = history_without_time(train_run(STATEFUL, tmp_path / "never", "train.reset_states=never").run_dir)
    assert by_epoch[0] == never[0]  # the first epoch starts from zero state either way
    assert by_epoch[1]["loss"] != never[1]["loss"]  # the second starts from the first's final state


def test_checkpoint_every_minutes_is_due_by_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("mnist_rnn.loop.time.monotonic", lambda: now[0])
    clock = CheckpointClock(every_steps=None, every_minutes=0.5)
    now[0] += 29.9
    assert not clock.due(global_step=1_000_000)  # steps alone never make it due
    now[0] += 0.1
    assert clock.due(global_step=3)
    clock.saved(global_step=3)
    now[0] += 10
    assert not clock.due(global_step=4)
    assert not CheckpointClock(every_steps=None, every_minutes=None).due(global_step=10**9)


TFLITE_CHECKED = ("data.layout", "model.bidirectional")


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.layout=columns"],
        ["model.cell=simple_rnn"],
        ["model.bidirectional=true"],
        ["model.projection=12"],
    ],
    ids=["columns", "simple_rnn", "bidirectional", "projection"],
)
def test_each_model_option_trains_and_exports_within_the_bounds(tmp_path: Path, overrides: list[str]) -> None:
    result = train_run(TINY, tmp_path / "run", "train.epochs=3", "model.units=[12]", *overrides)
    run = result.run_dir
    assert result.metrics["test_accuracy"] > 0.3  # chance is 0.1: the option really trains
    cfg = load_config(run / "config.yaml")
    x = load_dataset(cfg.data, cfg.seed).test.x[:8]
    model, _ = runs.load_checkpoint(run, "best")
    # TFLite's unrolled batch-1 twin is where a layout or wrapper would break; SavedModel for every option
    formats = ("saved_model", "tflite") if overrides[0].split("=")[0] in TFLITE_CHECKED else ("saved_model",)
    for fmt in formats:
        manifest = export.export_run(run, fmt)
        assert manifest["parity"]["ok"], (fmt, manifest["parity"])
        _, artefact = artefacts.load_artefact(Path(manifest["path"]))
        np.testing.assert_allclose(
            artefact(x), keras_predict(model, x, 8), atol=artefacts.FORMATS[fmt].max_prob_diff
        )
