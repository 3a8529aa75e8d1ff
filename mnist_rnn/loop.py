"""The pieces of one training epoch: its order, its batches, the fit call, and what watches each batch.

Each epoch calls `model.fit` once on an order derived from (seed, epoch) alone, so the data order of any
epoch can be recomputed without replaying the ones before it (what resuming needs). A Keras callback
(`BatchWatch`) sees the batches end: it feeds the progress bar, stops at a non-finite loss, honours a
stop request (a signal, or one a caller injected) after the batch in flight, and offers each step to the
mid-epoch checkpoint clock.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_rnn.config import ChunkLoss, LrSchedule, TrainConfig
from mnist_rnn.distribute import distributed_fit_epoch, placement, uses_custom_step

if TYPE_CHECKING:
    import keras
    import tensorflow as tf
    from rich.progress import Progress, TaskID


# The plan a run's learning rates follow: segments [first epoch, epochs, kind], kind "plan" (the schedule
# of the run's start), "restart" (the schedule again) or "hold" (the previous segment's last rate).
Schedule = list[list[Any]]


def planned_schedule(cfg: TrainConfig) -> Schedule:
    return [[0, cfg.epochs, "plan"]]


def learning_rate(cfg: TrainConfig, epoch: int, schedule: Schedule | None = None) -> float:
    """Learning rate for 0-based `epoch`: a pure function of the config and the run's schedule, so a
    resumed run gets the same rates. A segment, once planned, never changes (`extend_schedule`)."""
    segments = schedule or planned_schedule(cfg)
    index = max(i for i, seg in enumerate(segments) if epoch >= seg[0] or i == 0)
    start, length, kind = segments[index]
    if kind == "hold" and index > 0:
        return learning_rate(cfg, start - 1, segments[:index])
    e = min(epoch - start, length - 1)  # past the plan's end (epochs lowered, then raised): its last rate
    if cfg.lr_schedule is LrSchedule.cosine:
        return cfg.learning_rate * 0.5 * (1.0 + math.cos(math.pi * e / length))
    if cfg.lr_schedule is LrSchedule.step:
        return cfg.learning_rate * cfg.lr_step_factor ** (e // cfg.lr_step_every)
    return cfg.learning_rate


def extend_schedule(schedule: Schedule, cfg: TrainConfig) -> Schedule:
    """The schedule of a run resumed with `cfg.epochs`: unchanged up to its planned end; the epochs past
    it form one more segment, held at the last rate or the schedule restarted (train.lr_extend)."""
    end = schedule[-1][0] + schedule[-1][1]
    if cfg.epochs <= end:
        return schedule
    return [*schedule, [end, cfg.epochs - end, str(cfg.lr_extend)]]


def describe_extension(schedule: Schedule, cfg: TrainConfig) -> str | None:
    """One line for the resume message when the last segment extends a run; else None."""
    start, length, kind = schedule[-1]
    if kind == "plan" or cfg.lr_schedule is LrSchedule.none:
        return None
    added = f"epochs {start + 1}-{start + length} extend the run"
    if kind == "restart":
        again = f"the {cfg.lr_schedule} schedule again from {cfg.learning_rate:g}"
        return f"learning rate: {added} with {again} (train.lr_extend: restart)"
    last = learning_rate(cfg, start - 1, schedule)
    return f"learning rate: {added} at the last planned rate, {last:.3g} (train.lr_extend: hold)"


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool) -> np.ndarray:
    """The order of the training samples in `epoch`, derived from (seed, epoch) alone."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


@dataclass(frozen=True)
class EpochShape:
    """How one epoch of a run divides into steps (batches), fixed for the whole run."""

    images_used: int  # a stateful run drops the remainder that would leave a partial batch
    chunks: int  # batches per group of images: data.chunk_steps cuts each sequence into this many
    steps: int  # batches per epoch
    reset_every: int | None  # stateful: zero the carried state every N steps (None: by epoch or never)

    @classmethod
    def of(cls, cfg: TrainConfig, n_train: int, sequence_steps: int, chunk_steps: int | None) -> EpochShape:
        used = n_train // cfg.batch_size * cfg.batch_size if cfg.stateful else n_train
        chunks = sequence_steps // chunk_steps if chunk_steps else 1
        by_batches = cfg.reset_states if isinstance(cfg.reset_states, int) else None
        return cls(
            images_used=used,
            chunks=chunks,
            steps=math.ceil(used / cfg.batch_size) * chunks,
            reset_every=chunks if chunk_steps else by_batches,
        )


def epoch_batches(
    x: np.ndarray, y: np.ndarray, order: np.ndarray, cfg: TrainConfig, chunk_steps: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One epoch's samples in batch order: consecutive runs of `batch_size` rows are the batches.

    Stateful: only whole batches (sample i of batch k+1 continues sample i of batch k). Chunked: for each
    group of B images, batch t holds chunk t of those same B images, in order; the weights score every
    chunk against the image's label, or only the last chunk (`train.chunk_loss`).
    """
    if not cfg.stateful:
        return x[order], y[order], None
    batch = cfg.batch_size
    groups = order[: len(order) // batch * batch].reshape(-1, batch)  # (G, B) image ids
    if chunk_steps is None:
        return x[groups.reshape(-1)], y[groups.reshape(-1)], None
    n_groups, steps, features = len(groups), x.shape[1], x.shape[2]
    chunks = steps // chunk_steps
    # (G, B, C, k, F) -> (G, C, B, k, F): group g's batch c is chunk c of the group's B images
    xs = x[groups].reshape(n_groups, batch, chunks, chunk_steps, features).transpose(0, 2, 1, 3, 4)
    ys = np.broadcast_to(y[groups][:, None, :], (n_groups, chunks, batch))
    weights = np.ones((n_groups, chunks, batch), dtype=np.float32)
    if cfg.chunk_loss is ChunkLoss.last_chunk:
        weights[:, :-1, :] = 0.0
    return xs.reshape(-1, chunk_steps, features), ys.reshape(-1), weights.reshape(-1)


def compile_model(model: keras.Model, cfg: TrainConfig, xla: bool, distributed: bool = False) -> None:
    """Adam, the loss and accuracy, XLA or not; `distributed`: under a tf.distribute strategy (the plan's)."""
    import keras

    from mnist_rnn.layers import ReplicaSafeAdam

    # Under a strategy Keras would clip each replica's share of the gradient: see ReplicaSafeAdam.
    adam = ReplicaSafeAdam if distributed else keras.optimizers.Adam
    optimizer = adam(learning_rate=cfg.learning_rate, clipnorm=cfg.clipnorm)
    one_batch_per_call = cfg.stateful or distributed
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        # Stateful resets and checkpoints act between batches, so callbacks must see every one; under a
        # strategy a recurrent layer fails with more than one step per call (distribute.py).
        steps_per_execution=1 if one_batch_per_call else cfg.steps_per_execution,
        # A ShardedModel XLA-compiles each shard; its outer step must stay a plain graph (sharded_step.py).
        jit_compile=xla and getattr(model, "shards", 1) == 1,
    )


def fit_epoch(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    device: str,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    sample_weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """One pass over (x, y) in the given order: mnist-rnn's training step (also what scripts/bench.py times).

    A plain slices -> batch pipeline: Keras's numpy adapter adds a map stage (and a NodeDef warning).
    """
    return fit_batches(model, array_batches(x, y, batch_size, sample_weight), device, callbacks)


def array_batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, sample_weight: np.ndarray | None = None
) -> tf.data.Dataset:
    """Batches of arrays already in batch order."""
    import tensorflow as tf

    parts = (x, y) if sample_weight is None else (x, y, sample_weight)
    return tf.data.Dataset.from_tensor_slices(parts).batch(batch_size).prefetch(2)


def fit_batches(
    model: keras.Model,
    batches: tf.data.Dataset,
    device: str,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict[str, Any]:
    """One pass over a dataset of batches (an epoch's, or its rest after a resume)."""
    batches = without_autotune(batches)
    with placement(device):
        if uses_custom_step():  # MultiWorkerMirroredStrategy: Keras's fit does not run there
            return distributed_fit_epoch(model, batches, callbacks)
        return model.fit(batches, epochs=1, shuffle=False, verbose=0, callbacks=list(callbacks)).history


def without_autotune(batches: tf.data.Dataset) -> tf.data.Dataset:
    """`batches` with tf.data's autotuning off. With it on, a `fit` over such a pipeline often returned
    only at the next 10 ms x 2^k after its last batch, idle in between: an epoch slice whose batches ended
    at 1.85 s returned at 2.55 s, a 20 s epoch at 41 s (docs/performance.md, "An epoch's idle tail"). Our
    pipelines have fixed buffers and parallelism: there is nothing for it to tune."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.with_options(options)


# ------------------------------------------------------------------------------------ stopping


@dataclass
class StopRequest:
    """Asks training to stop after the batch in flight, saving `checkpoints/last` there.

    The first SIGINT/SIGTERM sets `signum` (see `graceful_signals`). A caller can inject the same request
    for a given global step (batches since the run's first epoch): `StopRequest(after_step=21)` stops once
    the batch that completes step 21 or later has finished, as if `injected_signum` had arrived then."""

    signum: int | None = None
    after_step: int | None = None
    injected_signum: int = signal.SIGTERM

    def requested(self, global_step: int) -> bool:
        if self.signum is None and self.after_step is not None and global_step >= self.after_step:
            self.signum = self.injected_signum
        return self.signum is not None


@contextmanager
def graceful_signals(stop: StopRequest) -> Iterator[None]:
    """First SIGINT/SIGTERM: finish the current batch, then stop cleanly. Second: abort at once."""
    if threading.current_thread() is not threading.main_thread():  # handlers only work there
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.signum is not None:
            raise KeyboardInterrupt
        stop.signum = signum

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class CheckpointClock:
    """Decides when a mid-epoch `last` checkpoint is due: after N more steps and/or M more minutes.

    Callbacks see every `steps_per_execution`-th batch, so it counts steps since the last save rather
    than asking for exact multiples."""

    def __init__(self, every_steps: int | None, every_minutes: float | None) -> None:
        self.every_steps, self.every_seconds = every_steps, (every_minutes * 60 if every_minutes else None)
        self.last_time, self.last_step = time.monotonic(), 0

    def due(self, global_step: int) -> bool:
        by_steps = self.every_steps is not None and global_step - self.last_step >= self.every_steps
        by_time = self.every_seconds is not None and time.monotonic() - self.last_time >= self.every_seconds
        return by_steps or by_time

    def saved(self, global_step: int) -> None:
        self.last_time, self.last_step = time.monotonic(), global_step


# ------------------------------------------------------------------------------ the batch watch


@dataclass
class BatchWatch:
    """What the epoch's callback reports back: where it stopped and why."""

    first_step: int  # batches of this epoch done before fit started (non-zero on a resumed epoch)
    last_step: int = 0  # the last batch seen to finish with a finite loss
    bad_step: int | None = None  # the batch whose loss was not finite


def batch_callback(
    watch: BatchWatch,
    progress: tuple[Progress, TaskID],
    stop: StopRequest,
    epoch_start_step: int,
    metric_state: list[Any] | None,
    on_step: Callable[[int], None],
    reset_every: int | None = None,
) -> keras.callbacks.Callback:
    """The Keras callback of one epoch (Keras is imported only here). At epoch start it restores the
    running loss/accuracy totals of an epoch resumed part-way, so the epoch's figures equal an
    uninterrupted epoch's. `epoch_start_step` is the global step of the epoch's first batch."""
    import keras

    from mnist_rnn.model import reset_states

    bar, task = progress
    watch.last_step = watch.first_step

    class Callback(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            restore_variables(metric_variables(self.model), metric_state)

        def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            step = watch.first_step + batch + 1
            loss = float(logs.get("loss", float("nan")))
            bar.update(task, completed=step, loss=loss, acc=float(logs.get("accuracy", float("nan"))))
            if not math.isfinite(loss):
                watch.bad_step = step
                self.model.stop_training = True
                return
            watch.last_step = step
            if reset_every and step % reset_every == 0:
                reset_states(self.model)  # before any checkpoint of this step records the state
            if stop.requested(epoch_start_step + step):
                self.model.stop_training = True
            else:
                on_step(step)

    return Callback()


def metric_variables(model: keras.Model) -> list[Any]:
    """The variables behind fit's running loss and accuracy (totals and counts)."""
    return [v for metric in model.metrics for v in metric.variables]


def restore_variables(variables: list[Any], values: list[Any] | None) -> None:
    for variable, value in zip(variables, values or [], strict=bool(values)):
        variable.assign(np.asarray(value, dtype=variable.dtype))
