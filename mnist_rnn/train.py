"""Training and nothing else: seed, build, fit epoch by epoch, checkpoint, log, score the best checkpoint.

The loop calls `model.fit` for one epoch at a time on an order derived from (seed, epoch), so the data
order of any epoch can be recomputed without replaying the ones before it (what resuming needs), and
keeps validation, the learning-rate schedule, checkpoints and early stopping in plain Python.
"""

from __future__ import annotations

import math
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from mnist_rnn import __version__, runs
from mnist_rnn.config import (
    FUSED_MIN_SAMPLES,
    ChunkLoss,
    Config,
    Device,
    Jit,
    LrSchedule,
    LstmKernel,
    TrainConfig,
    fused_lstm_blockers,
    training_images,
)
from mnist_rnn.data import Dataset, sequence_shape
from mnist_rnn.errors import DeviceError, Interrupted, TrainingError
from mnist_rnn.evaluate import inference_model, score
from mnist_rnn.model import build_model, cudnn_blockers, recurrent_states, reset_states, uses_fused_lstm

if TYPE_CHECKING:
    import keras


def select_device(device: Device) -> str:
    """Return the TensorFlow device string for `train.device`; must run before any TensorFlow op."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if device is Device.gpu and not gpus:
        raise DeviceError(
            "train.device is gpu but TensorFlow sees no GPU on this machine; "
            "set train.device: auto (or cpu), or install a CUDA-enabled TensorFlow "
            "(pip install 'tensorflow[and-cuda]')"
        )
    if device is Device.cpu and gpus:
        tf.config.set_visible_devices([], "GPU")  # hide them so no op lands there
        return "/CPU:0"
    return "/GPU:0" if gpus and device is not Device.cpu else "/CPU:0"


def describe_device(device: str) -> str:
    import tensorflow as tf

    if device.startswith("/GPU"):
        gpu = tf.config.list_physical_devices("GPU")[0]
        details = tf.config.experimental.get_device_details(gpu)
        return f"{device} ({details.get('device_name', gpu.name)})"
    return f"{device} ({platform.processor() or platform.machine()}, TensorFlow CPU)"


def seed_everything(
    seed: int, deterministic: bool, jit_compile: bool = False, device: str = "/CPU:0"
) -> None:
    """Seed Python, NumPy and TensorFlow once, at the start of a command.

    TensorFlow's op-determinism switch also makes Keras turn XLA off, so it is used only where XLA is not:
    XLA-compiled steps on a CPU are deterministic as they are (no atomics; the input order is fixed), which
    the determinism and resume tests check on this very path.
    """
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # the public API has no "disable"

    keras.utils.set_random_seed(seed)
    # The switch is process-wide and sticky: set it both ways, so an earlier run in the same process
    # (tests, notebooks) cannot silently turn XLA off for this one.
    if deterministic and not (jit_compile and device.startswith("/CPU")):
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate for 0-based `epoch`: a pure function, so a resumed run gets the same schedule."""
    if cfg.lr_schedule is LrSchedule.cosine:
        return cfg.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
    if cfg.lr_schedule is LrSchedule.step:
        return cfg.learning_rate * cfg.lr_step_factor ** (epoch // cfg.lr_step_every)
    return cfg.learning_rate


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool) -> np.ndarray:
    """The order of the training samples in `epoch`, derived from (seed, epoch) alone."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


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


def fit_epoch(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    device: str,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    sample_weight: np.ndarray | None = None,
) -> dict[str, list[float]]:
    """One pass over (x, y) in the given order: mnist-rnn's training step (also what scripts/bench.py times).

    A plain slices -> batch pipeline: Keras's numpy adapter adds a map stage (and a NodeDef warning).
    """
    import tensorflow as tf

    parts = (x, y) if sample_weight is None else (x, y, sample_weight)
    batches = tf.data.Dataset.from_tensor_slices(parts).batch(batch_size).prefetch(2)
    with tf.device(device):
        return model.fit(batches, epochs=1, shuffle=False, verbose=0, callbacks=list(callbacks)).history


XLA_MIN_STEPS = 100  # measured: XLA wins on 784-step pixels (1.8x), loses on 2-layer 28-step rows (0.85x)


@dataclass(frozen=True)
class Execution:
    """How training runs the model: chosen once per run from the config and the device."""

    fused: bool  # FusedLSTM instead of keras.layers.LSTM
    xla: bool  # XLA-compile the train/predict steps

    def describe(self) -> str:
        layers = "fused LSTM kernel" if self.fused else "Keras recurrent layers"
        return f"{layers}, XLA {'on' if self.xla else 'off'}"


def plan_execution(cfg: Config, device: str) -> Execution:
    """The fast path, by measurement (docs/performance.md). On a CPU: the fused LSTM under XLA for
    stateless LSTMs on short sequences, in runs long enough to repay XLA's compile; XLA alone for long
    sequences; plain Keras graphs otherwise. On a GPU: Keras's LSTM (cuDNN). Stateful runs keep to plain
    graphs: resets and checkpoints act between single batches. `lstm_kernel`/`jit_compile` on/off win."""
    kernel, jit = cfg.model.lstm_kernel, cfg.train.jit_compile
    long_run = training_images(cfg.data) * cfg.train.epochs >= FUSED_MIN_SAMPLES
    fused = kernel is LstmKernel.fused or (
        kernel is LstmKernel.auto
        and not fused_lstm_blockers(cfg)
        and jit is not Jit.off
        and device.startswith("/CPU")
        and long_run
    )
    steps = sequence_shape(cfg.data.layout)[0]
    if cfg.train.stateful:
        xla = False
    else:
        xla = jit is Jit.on or (jit is Jit.auto and (fused or steps >= XLA_MIN_STEPS))
    return Execution(fused=fused, xla=xla)


def compile_model(model: keras.Model, cfg: TrainConfig, xla: bool) -> None:
    import keras

    optimizer = keras.optimizers.Adam(learning_rate=cfg.learning_rate, clipnorm=cfg.clipnorm)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        # Stateful resets and checkpoints act between batches, so callbacks must see every one.
        steps_per_execution=1 if cfg.stateful else cfg.steps_per_execution,
        jit_compile=xla,
    )


def environment_facts(device: str) -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {
        "mnist-rnn": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": describe_device(device),
    }


class _StopRequest:
    """Set by the SIGINT/SIGTERM handler; training stops after the batch in flight."""

    def __init__(self) -> None:
        self.signum: int | None = None


@contextmanager
def _graceful_signals(stop: _StopRequest) -> Iterator[None]:
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


class _BatchWatch:
    """Keras callback factory (Keras is imported only here). Per batch: feed the progress bar, stop at
    the first non-finite loss, stop after the batch in flight when a signal asked for it, and offer the
    step to `on_step` (mid-epoch checkpoints). At epoch start it restores the running loss/accuracy
    totals of an epoch resumed part-way, so the epoch's figures equal an uninterrupted epoch's."""

    @staticmethod
    def make(
        progress: Progress,
        task: Any,
        stop: _StopRequest,
        first_step: int,
        metric_state: list[Any] | None,
        on_step: Callable[[int], None],
        reset_every: int | None = None,
    ) -> keras.callbacks.Callback:
        import keras

        class Callback(keras.callbacks.Callback):
            bad_step: int | None = None
            last_step: int = first_step

            def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                _restore(metric_variables(self.model), metric_state)

            def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
                logs = logs or {}
                step = first_step + batch + 1
                loss = float(logs.get("loss", float("nan")))
                progress.update(
                    task, completed=step, loss=loss, acc=float(logs.get("accuracy", float("nan")))
                )
                if not math.isfinite(loss):
                    self.bad_step = step
                    self.model.stop_training = True
                    return
                self.last_step = step
                if reset_every and step % reset_every == 0:
                    reset_states(self.model)  # before any checkpoint of this step records the state
                if stop.signum is not None:
                    self.model.stop_training = True
                else:
                    on_step(step)

        return Callback()


def metric_variables(model: keras.Model) -> list[Any]:
    """The variables behind fit's running loss and accuracy (totals and counts)."""
    return [v for metric in model.metrics for v in metric.variables]


def rng_variables(model: keras.Model) -> list[Any]:
    """The states of Keras's seed generators (dropout masks). Keras saves them with the model but does
    not restore them on load, so checkpoints carry them in state.json."""
    return [v for v in model.variables if "seed_generator_state" in v.path]


def _restore(variables: list[Any], values: list[Any] | None) -> None:
    for variable, value in zip(variables, values or [], strict=bool(values)):
        variable.assign(np.asarray(value, dtype=variable.dtype))


def _build_metrics(model: keras.Model) -> None:
    """Keras builds compile metrics on their first update; build them so their state can be restored.
    (On a stateful model this call moves the state: restore carried states after it.)"""
    batch = model.input_shape[0] or 1
    x = np.zeros((batch, *model.input_shape[1:]), dtype=np.float32)
    y = np.zeros((batch,), dtype=np.int32)
    model.compute_metrics(x, y, model(x, training=False), sample_weight=None)


class _TensorBoard:
    """Per-epoch scalars under tensorboard/{train,validation}, each (tag, epoch) written exactly once.

    The event files are their own record of what was logged: a resumed run reads them back and writes
    only the scalars of history rows they lack. (A separate "last logged epoch" marker cannot be kept in
    step with them: a kill between flushing the events and writing the marker repeats an epoch, and
    writing the marker first loses one.)"""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.writers: dict[str, Any] = {}
        self.logged: dict[str, set[tuple[str, int]]] = {}
        if enabled:
            import tensorflow as tf

            base = run_dir / runs.TENSORBOARD
            # Read before creating the writers, whose new (empty) event files hold nothing yet.
            self.logged = {name: logged_scalars(base / name) for name in ("train", "validation")}
            self.writers = {name: tf.summary.create_file_writer(str(base / name)) for name in self.logged}

    def catch_up(self, history: list[dict[str, Any]]) -> None:
        """Log what a crash kept from TensorBoard: rows of the checkpoint's history not in the files."""
        for row in history:
            self.log(row["epoch"], row)

    def log(self, epoch: int, row: dict[str, Any]) -> None:
        if not self.writers:
            return
        import tensorflow as tf

        pairs = {
            "train": {"loss": row["loss"], "accuracy": row["accuracy"], "learning_rate": row["lr"]},
            "validation": {"loss": row["val_loss"], "accuracy": row["val_accuracy"]},
        }
        for name, scalars in pairs.items():
            todo = {
                key: value
                for key, value in scalars.items()
                if value is not None and (key, epoch) not in self.logged[name]
            }
            if not todo:
                continue
            with self.writers[name].as_default(step=epoch):
                for key, value in todo.items():
                    tf.summary.scalar(key, value)
            self.writers[name].flush()
            self.logged[name].update((key, epoch) for key in todo)


def logged_scalars(directory: Path) -> set[tuple[str, int]]:
    """The (tag, step) pairs of the scalars in a TensorBoard log directory's event files.

    A kill during a flush can leave a torn record at the end of a file; what precedes it counts (as in
    TensorBoard's own reader) and the torn scalar is written again."""
    import tensorflow as tf

    found: set[tuple[str, int]] = set()
    for path in sorted(directory.glob("events.out.tfevents.*")):
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                event = tf.compat.v1.Event.FromString(record.numpy())
                found.update((value.tag, int(event.step)) for value in event.summary.value)
        except tf.errors.DataLossError:
            continue
    return found


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


class _CheckpointClock:
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


def train(
    cfg: Config,
    dataset: Dataset,
    run_dir: Path,
    device: str,
    console: Console,
    argv: Sequence[str] = (),
    resume: bool = False,
) -> dict[str, Any]:
    """Train `cfg` on `dataset`, writing everything into `run_dir` (already created). Returns metrics.

    With `resume`, continue from `run_dir/checkpoints/last`, which may sit at an epoch end or part-way
    through an epoch: weights, optimizer slots and step, epoch and batch position, best-so-far,
    early-stopping counter, history, and fit's running loss/accuracy totals. The data order of an epoch
    is a function of (seed, epoch), so the remaining batches are exactly those an uninterrupted run sees.
    """
    import tensorflow as tf

    execution = plan_execution(cfg, device)
    seed_everything(cfg.seed, cfg.train.deterministic, execution.xla, device)
    command = list(argv) or ["mnist-rnn", *sys.argv[1:]]
    runs.write_config(run_dir, cfg)  # on resume: the same config, train.epochs possibly raised
    if resume:
        runs.append_command(run_dir, command, datetime.now().isoformat(timespec="seconds"))
    else:
        runs.write_command(run_dir, command, environment_facts(device))
    console.print(f"data: {dataset.description}", highlight=False)
    console.print(f"device: {describe_device(device)}", highlight=False)
    if device.startswith("/GPU"):
        for reason in cudnn_blockers(cfg.model):
            console.print(f"note: {reason}: Keras will not use the cuDNN kernel", highlight=False)

    tcfg = cfg.train
    train_x, train_y = dataset.train.x, dataset.train.y
    # `epoch`: epochs finished; `step`: batches finished of the next one (0 at an epoch boundary).
    state: dict[str, Any] = {
        "epoch": 0, "step": 0, "best": -1.0, "best_epoch": 0, "stale": 0, "fit_seconds": 0.0,
        "history": [], "metric_state": None, "rng_state": None, "rnn_state": None, "seed": cfg.seed,
    }  # fmt: skip
    chunk = cfg.data.chunk_steps
    full_shape = sequence_shape(cfg.data.layout)  # (steps, features) of a whole image
    # A stateful model sees a fixed batch of (chunks of) sequences; scoring uses a stateless twin.
    train_shape = (chunk or full_shape[0], full_shape[1])
    with tf.device(device):
        if resume:
            model, saved = runs.load_checkpoint(run_dir, "last", warn=console.print)
            state.update({k: saved[k] for k in state if k in saved})
            _build_metrics(model)
            _restore(rng_variables(model), state["rng_state"])
            _restore(recurrent_states(model) if tcfg.stateful else [], state["rnn_state"])
            console.print(
                f"resuming at epoch {state['epoch'] + 1}, batch {state['step']} from {run_dir}",
                highlight=False,
            )
        else:
            batch = tcfg.batch_size if tcfg.stateful else None
            model = build_model(
                cfg.model, train_shape, batch_size=batch, stateful=tcfg.stateful, fused=execution.fused
            )
            compile_model(model, tcfg, execution.xla)
    # A resumed run goes on with what its checkpoint holds, whatever this device would have chosen.
    running = Execution(fused=uses_fused_lstm(model), xla=bool(getattr(model, "jit_compile", False)))
    console.print(
        f"model: {model.name}, {model.count_params():,} parameters; {running.describe()}", highlight=False
    )

    def carried() -> dict[str, Any]:
        return {
            "rng_state": [np.asarray(v).tolist() for v in rng_variables(model)],
            "rnn_state": [np.asarray(v).tolist() for v in recurrent_states(model)] if tcfg.stateful else None,
        }

    used = len(train_y) // tcfg.batch_size * tcfg.batch_size if tcfg.stateful else len(train_y)
    chunks = full_shape[0] // chunk if chunk else 1
    steps_per_epoch = math.ceil(used / tcfg.batch_size) * chunks
    reset_every = chunks if chunk else (tcfg.reset_states if isinstance(tcfg.reset_states, int) else None)
    if tcfg.stateful:
        console.print(
            f"stateful: batches of {tcfg.batch_size}; each epoch trains on {used} of {len(train_y)} images "
            f"({len(train_y) - used} dropped so every batch is whole)"
            + (f"; {chunks} chunks of {chunk} steps per image, state reset after the last" if chunk else "")
            + f"; scores use a stateless twin on all {len(dataset.test)} test images",
            highlight=False,
        )
    tensorboard = _TensorBoard(run_dir, cfg.run.tensorboard)
    history: list[dict[str, Any]] = state["history"]
    runs.write_history(run_dir, history)  # drops rows written after the checkpoint, before a crash
    tensorboard.catch_up(history)  # and logs the ones a crash kept from TensorBoard
    stopped_early = False
    stop = _StopRequest()
    clock = _CheckpointClock(tcfg.checkpoint_every_steps, tcfg.checkpoint_every_minutes)
    clock.saved(state["epoch"] * steps_per_epoch + state["step"])  # where the run (re)starts

    def save_mid_epoch(step: int, elapsed: float) -> None:
        mid = {**state, "step": step, "fit_seconds": state["fit_seconds"] + elapsed}
        mid["metric_state"] = [np.asarray(v).tolist() for v in metric_variables(model)]
        mid.update(carried())
        runs.save_checkpoint(run_dir, "last", model, mid)
        clock.saved(state["epoch"] * steps_per_epoch + step)

    progress = Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.4f}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with progress, _graceful_signals(stop):
        for epoch in range(state["epoch"], tcfg.epochs):
            if stop.signum is not None:  # arrived between epochs (validation, checkpointing)
                raise _interrupted(stop, run_dir, epoch, state["epoch"], 0)
            first_step = state["step"]  # non-zero only for an epoch resumed part-way
            lr = learning_rate(tcfg, epoch)
            model.optimizer.learning_rate.assign(lr)
            order = epoch_order(cfg.seed, epoch, len(train_y), tcfg.shuffle)
            xs, ys, ws = epoch_batches(train_x, train_y, order, tcfg, chunk)
            rows = slice(first_step * tcfg.batch_size, None)  # a resumed epoch continues at its next batch
            if tcfg.stateful and first_step == 0 and (tcfg.reset_states == "epoch" or chunk):
                reset_states(model)
            task = progress.add_task(
                "", total=steps_per_epoch, completed=first_step, epoch=f"{epoch + 1}/{tcfg.epochs}", loss=0.0,
                acc=0.0,
            )  # fmt: skip
            start = time.perf_counter()

            def on_step(step: int, epoch: int = epoch, start: float = start) -> None:
                if clock.due(epoch * steps_per_epoch + step) and step < steps_per_epoch:
                    save_mid_epoch(step, time.perf_counter() - start)

            watch = _BatchWatch.make(
                progress, task, stop, first_step, state["metric_state"], on_step, reset_every
            )
            logs = fit_epoch(
                model, xs[rows], ys[rows], tcfg.batch_size, device, [watch], None if ws is None else ws[rows]
            )
            seconds = time.perf_counter() - start
            progress.remove_task(task)
            if watch.bad_step is not None or not math.isfinite(logs["loss"][-1]):
                raise TrainingError(
                    f"loss became {logs['loss'][-1]} at epoch {epoch + 1}, batch {watch.bad_step}; "
                    f"nothing was saved from it and the last good checkpoint in {run_dir} is kept; "
                    "lower train.learning_rate or set train.clipnorm"
                )
            if stop.signum is not None and watch.last_step < steps_per_epoch:
                save_mid_epoch(watch.last_step, seconds)  # the batch in flight finished: keep it
                raise _interrupted(stop, run_dir, epoch, epoch, watch.last_step)

            val = (
                score(inference_model(cfg, model), dataset.val, tcfg.eval_batch_size)
                if dataset.val is not None
                else None
            )
            row = {
                "epoch": epoch + 1,
                "loss": float(logs["loss"][-1]),
                "accuracy": float(logs["accuracy"][-1]),
                "val_loss": val.loss if val else None,
                "val_accuracy": val.accuracy if val else None,
                "lr": lr,
                "seconds": round(seconds, 3),
            }
            history.append(row)
            # Without validation, the latest epoch is the best one we can name.
            monitored = row["val_accuracy"] if val else row["accuracy"]
            improved = monitored > state["best"]
            state["stale"] = 0 if improved else state["stale"] + 1
            if improved:
                state["best"], state["best_epoch"] = monitored, epoch + 1
            state.update(
                epoch=epoch + 1, step=0, metric_state=None, fit_seconds=state["fit_seconds"] + seconds
            )
            state.update(carried())
            # `best` before `last`: whatever `last` says about the best epoch is then already on disk.
            if improved:
                runs.save_checkpoint(run_dir, "best", model, state)
            runs.save_checkpoint(run_dir, "last", model, state)
            clock.saved(state["epoch"] * steps_per_epoch)
            runs.write_history(run_dir, history)
            tensorboard.log(epoch + 1, row)
            console.print(
                f"epoch {epoch + 1:>3}/{tcfg.epochs}  loss {row['loss']:.4f}  acc {row['accuracy']:.4f}  "
                f"val_loss {_fmt(row['val_loss'])}  val_acc {_fmt(row['val_accuracy'])}  "
                f"lr {lr:.2e}  {seconds:.1f}s{'  *best' if improved else ''}",
                highlight=False,
            )
            patience = tcfg.early_stopping_patience
            if patience is not None and state["stale"] >= patience:
                console.print(
                    f"early stopping: no validation improvement for {patience} epochs", highlight=False
                )
                stopped_early = True
                break

    # Score the best checkpoint as saved on disk: exactly what `mnist-rnn eval` will load.
    best_model, _ = runs.load_checkpoint(run_dir, "best", warn=console.print)
    test = score(inference_model(cfg, best_model), dataset.test, tcfg.eval_batch_size)
    fit_seconds = state["fit_seconds"]
    metrics = {
        "best_val_accuracy": state["best"] if dataset.val is not None else None,
        "best_epoch": state["best_epoch"],
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "test_checkpoint": "best",
        "train_seconds": round(fit_seconds, 3),
        "samples_per_second": round(len(history) * used / fit_seconds, 1) if fit_seconds else None,
        "train_samples": len(train_y),
        "test_samples": test.samples,
        "device": device,
        "execution": asdict(running),  # the path that trained it: which recurrent kernel, XLA or not
    }
    runs.write_metrics(run_dir, metrics)
    _summary_table(console, metrics, asdict(test))
    return metrics


def _interrupted(
    stop: _StopRequest, run_dir: Path, epoch: int, saved_epoch: int, saved_step: int
) -> Interrupted:
    name = signal.Signals(stop.signum or signal.SIGINT).name
    where = f"epoch {saved_epoch}" if not saved_step else f"epoch {saved_epoch + 1}, batch {saved_step}"
    return Interrupted(
        f"stopped by {name} during epoch {epoch + 1}; checkpoints/last holds {where}; "
        f"resume with: mnist-rnn train --resume {run_dir}",
        128 + int(stop.signum or signal.SIGINT),
    )


def _summary_table(console: Console, metrics: dict[str, Any], test: dict[str, Any]) -> None:
    table = Table(title="Run summary", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("best epoch", str(metrics["best_epoch"]))
    table.add_row("best val accuracy", _fmt(metrics["best_val_accuracy"]))
    table.add_row("test accuracy (best)", f"{test['accuracy']:.4f}")
    table.add_row("test loss (best)", f"{test['loss']:.4f}")
    table.add_row("training time", f"{metrics['train_seconds']:.1f} s")
    table.add_row("samples / second", f"{metrics['samples_per_second']:,.0f}")
    console.print(table)
