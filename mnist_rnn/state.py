"""Training state as data: where a run stands, saved into and restored from a checkpoint in one place.

A checkpoint is the model (weights and optimizer slots, Keras's own file) plus `state.json`, which is
`TrainingState.to_json()`. Restoring reads both back and puts into the model what Keras does not
restore itself: fit's running metric totals, the dropout generators' state and a stateful run's carried
recurrent state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_rnn import runs
from mnist_rnn.loop import metric_variables, restore_variables
from mnist_rnn.model import recurrent_states

if TYPE_CHECKING:
    import keras

# state.json keeps the key names of earlier releases, so their runs still resume.
_JSON_NAMES = {"epochs_without_improvement": "stale"}


@dataclass
class TrainingState:
    """Everything a checkpoint holds beside the weights and the optimizer."""

    seed: int
    epoch: int = 0  # epochs finished
    step: int = 0  # batches finished of the next epoch (0 at an epoch boundary)
    best: float = -1.0  # best monitored accuracy so far (validation, or training without validation)
    best_epoch: int = 0
    epochs_without_improvement: int = 0  # early stopping's counter
    fit_seconds: float = 0.0  # time spent in fit, all sessions of the run together
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per finished epoch
    metric_state: list[Any] | None = None  # fit's running loss/accuracy totals of a part-done epoch
    rng_state: list[Any] | None = None  # Keras's seed generators (dropout masks)
    rnn_state: list[Any] | None = None  # a stateful run's carried recurrent state
    schedule: list[list[Any]] | None = None  # the learning-rate plan (loop.Schedule); None in older runs

    def to_json(self) -> dict[str, Any]:
        return {_JSON_NAMES.get(key, key): value for key, value in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any], seed: int) -> TrainingState:
        names = {_JSON_NAMES.get(f.name, f.name): f.name for f in fields(cls)}
        return cls(**{"seed": seed, **{names[key]: value for key, value in data.items() if key in names}})

    def end_epoch(self, row: dict[str, Any], monitored: float, seconds: float) -> bool:
        """Record a finished epoch (its history row and the accuracy that picks the best); True if it is
        the best so far."""
        improved = monitored > self.best
        if improved:
            self.best, self.best_epoch = monitored, row["epoch"]
        self.epochs_without_improvement = 0 if improved else self.epochs_without_improvement + 1
        self.history.append(row)
        self.epoch, self.step, self.metric_state = row["epoch"], 0, None
        self.fit_seconds += seconds
        return improved

    def capture(self, model: keras.Model, stateful: bool) -> None:
        """Copy from the model what Keras's own file would not bring back: seed generators and state."""
        self.rng_state = [np.asarray(v).tolist() for v in rng_variables(model)]
        self.rnn_state = [np.asarray(v).tolist() for v in recurrent_states(model)] if stateful else None

    def mid_epoch(self, model: keras.Model, stateful: bool, step: int, seconds: float) -> TrainingState:
        """The state `step` batches into the epoch in flight, with fit's running totals so far."""
        mid = TrainingState(**{**asdict(self), "step": step, "fit_seconds": self.fit_seconds + seconds})
        mid.metric_state = [np.asarray(v).tolist() for v in metric_variables(model)]
        mid.capture(model, stateful)
        return mid

    def save(self, run_dir: Path, which: str, model: keras.Model) -> None:
        runs.save_checkpoint(run_dir, which, model, self.to_json())


def load_training_state(
    run_dir: Path, which: str, seed: int, stateful: bool, warn: Any = None
) -> tuple[keras.Model, TrainingState]:
    """The checkpoint's model, with what Keras does not restore put back, and its state."""
    model, saved = runs.load_checkpoint(run_dir, which, warn=warn)
    state = TrainingState.from_json(saved, seed)
    build_metrics(model)
    restore_variables(rng_variables(model), state.rng_state)
    restore_variables(recurrent_states(model) if stateful else [], state.rnn_state)
    return model, state


def rng_variables(model: keras.Model) -> list[Any]:
    """The states of Keras's seed generators (dropout masks). Keras saves them with the model but does
    not restore them on load, so checkpoints carry them in state.json."""
    return [v for v in model.variables if "seed_generator_state" in v.path]


def build_metrics(model: keras.Model) -> None:
    """Keras builds compile metrics on their first update; build them so their state can be restored.
    (On a stateful model this call moves the state: restore carried states after it.)"""
    batch = model.input_shape[0] or 1
    x = np.zeros((batch, *model.input_shape[1:]), dtype=np.float32)
    y = np.zeros((batch,), dtype=np.int32)
    model.compute_metrics(x, y, model(x, training=False), sample_weight=None)
