"""One training run, from a validated config to metrics.json: `run_training` is the entry point that the
CLI, the tests and the scripts all call. It reads top to bottom:

    run_training(cfg, run_dir)   plan (or check, to resume) the run directory, create and lock it
      open_session               (session.py) record the run; build the model, or restore it and its
                                 TrainingState from checkpoints/last
      _run_epoch                 fit one epoch on the (seed, epoch) order: mid-epoch checkpoints, stop
                                 requests (signals or injected), non-finite losses
      _end_epoch                 validation, best/last checkpoints, history, TensorBoard, the log line,
                                 early stopping
      _final_test                score the best checkpoint as saved on disk; metrics.json, summary table
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console

from mnist_rnn import runlock, runs
from mnist_rnn.augment import augmented_batches
from mnist_rnn.cluster import lost_worker, weights_digest, worker_scratch
from mnist_rnn.config import Config
from mnist_rnn.config_files import config_diff, config_to_dict, flatten
from mnist_rnn.data import Dataset, load_dataset
from mnist_rnn.distribute import cudnn_report, distributed, gpu_description, precision
from mnist_rnn.errors import ConfigError, Interrupted, TrainingError
from mnist_rnn.execution import cpu_description
from mnist_rnn.layouts import input_permutation, pixel_index
from mnist_rnn.loop import (
    BatchWatch,
    StopRequest,
    array_batches,
    batch_callback,
    epoch_batches,
    epoch_order,
    fit_batches,
    graceful_signals,
    learning_rate,
)
from mnist_rnn.memory import keep_freed_memory
from mnist_rnn.model import reset_states
from mnist_rnn.plan import make_plan
from mnist_rnn.plots import CURVES, plot_curves
from mnist_rnn.session import EpochEnd, EpochHook, Session, open_session
from mnist_rnn.tables import format_value, summary_table

if TYPE_CHECKING:
    import tensorflow as tf


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]  # what metrics.json holds


@dataclass(frozen=True)
class _Fit:
    loss: float
    accuracy: float
    lr: float
    seconds: float


def run_training(
    cfg: Config,
    run_dir: Path | None = None,
    *,
    resume: bool = False,
    stop: StopRequest | None = None,
    console: Console | None = None,
    command: Sequence[str] | None = None,
    dataset: Dataset | None = None,
    on_epoch_end: EpochHook | None = None,
) -> RunResult:
    """Train `cfg` into `run_dir` (new or empty; default `<run.root>/<YYYYmmdd-HHMMSS>-<name>/`).

    With `resume`, continue `run_dir` from checkpoints/last, which may sit at an epoch end or part-way
    through an epoch; only `train.epochs` may differ from the run's saved config. The data order of an
    epoch is a function of (seed, epoch), so the remaining batches are exactly those an uninterrupted run
    sees. `stop` injects a stop request (tests stop at a given batch this way); `command` is what
    command.txt records (default: this process's argv); `dataset` replaces loading `cfg.data`.
    Everything is checked before anything is written: a bad input leaves no directory behind.
    """
    keep_freed_memory()  # a no-op after the CLI's TensorFlow import; for callers from Python
    console = console or Console(stderr=True, soft_wrap=True)
    plan = make_plan(cfg)  # every refusal of this machine (device, cluster, precision) before any write
    target = _target(cfg, run_dir, resume, plan.chief)
    data = dataset if dataset is not None else load_dataset(cfg.data, cfg.seed)
    with ExitStack() as stack:
        # a multi_worker run's other workers write nothing into the run directory
        where = target if plan.chief else stack.enter_context(worker_scratch(target, resume))
        runs.create_run_dir(where)
        stack.enter_context(runlock.run_lock(where))
        stack.enter_context(distributed(plan.strategy))
        stack.enter_context(precision(plan.mixed_precision))
        console.print(
            f"run directory: {target}" + ("" if plan.chief else " (written by the chief)"), highlight=False
        )
        session = open_session(cfg, data, where, plan, console, resume, command)
        session.stop, session.on_epoch_end = stop or StopRequest(), on_epoch_end
        try:
            metrics = _train_and_record(session)
        except Exception as exc:
            if plan.strategy is None or (lost := lost_worker(exc, target)) is None:
                raise
            raise lost from None
    return RunResult(target, metrics)


def _target(cfg: Config, run_dir: Path | None, resume: bool, chief: bool) -> Path:
    """The run directory: checked to resume, planned (new or empty) for the chief or a single process;
    a non-chief worker only needs its name (it never writes there)."""
    if resume:
        return _resumable(run_dir, cfg)
    if chief:
        return runs.plan_run_dir(cfg.run.root, cfg.name, run_dir)
    return run_dir or cfg.run.root / cfg.name


def _train_and_record(s: Session) -> dict[str, Any]:
    """The epochs and the final test, with the run's status.json kept true at every way out."""
    parameters, planned = s.model.count_params(), s.cfg.train.epochs
    runs.write_status(s.run_dir, "running", parameters=parameters, epochs_planned=planned, message=None)
    try:
        metrics = _final_test(s, _train_epochs(s))
    except (Interrupted, KeyboardInterrupt) as exc:
        runs.write_status(s.run_dir, "interrupted", message=str(exc) or "aborted by a second Ctrl-C")
        raise
    except Exception as exc:
        runs.write_status(s.run_dir, "failed", message=f"{type(exc).__name__}: {exc}"[:500])
        raise
    runs.write_status(s.run_dir, "finished")
    return metrics


def _resumable(run_dir: Path | None, cfg: Config) -> Path:
    """`run_dir`, if `cfg` may continue it: the same config but for train.epochs, and epochs left."""
    if run_dir is None:
        raise ConfigError("resuming needs the run directory to continue")
    saved = runs.read_run_config(run_dir)
    changed = [key for key in config_diff(saved, cfg) if key not in ("train.epochs", "train.lr_extend")]
    if changed:
        raise ConfigError(
            f"--resume {run_dir}: the config differs from the run's saved config in {', '.join(changed)}; "
            "only train.epochs (and train.lr_extend) may change when resuming (start a new run for the rest)"
        )
    done = runs.read_checkpoint_state(run_dir, "last").get("epoch", 0)
    if done >= cfg.train.epochs:
        raise ConfigError(
            f"--resume {run_dir}: the run already finished {done} of {cfg.train.epochs} epochs; "
            f"raise train.epochs (e.g. --set train.epochs={done + 5}) to train longer"
        )
    return run_dir


# ------------------------------------------------------------------------------------- the epochs


def _train_epochs(s: Session) -> bool:
    """Run the remaining epochs; True if early stopping (or the epoch hook) ended the run."""
    with s.progress, graceful_signals(s.stop):
        for epoch in range(s.state.epoch, s.cfg.train.epochs):
            if s.stop.signum is not None:  # arrived between epochs (validation, checkpointing)
                raise _interrupted(s, epoch, s.state.epoch, 0)
            if _end_epoch(s, epoch, _run_epoch(s, epoch)):
                return True
    return False


def _run_epoch(s: Session, epoch: int) -> _Fit:
    """Fit epoch `epoch` (0-based) from its first unfinished batch; checkpoint mid-epoch when due."""
    tcfg, first_step = s.cfg.train, s.state.step  # non-zero only for an epoch resumed part-way
    lr = learning_rate(tcfg, epoch, s.state.schedule)
    s.model.optimizer.learning_rate.assign(lr)
    order = epoch_order(s.cfg.seed, epoch, len(s.data.train), tcfg.shuffle)
    batches = _epoch_data(s, epoch, order, first_step)
    if tcfg.stateful and first_step == 0 and (tcfg.reset_states == "epoch" or s.cfg.data.chunk_steps):
        reset_states(s.model)
    task = s.progress.add_task(
        "", total=s.shape.steps, completed=first_step, epoch=f"{epoch + 1}/{tcfg.epochs}", loss=0.0, acc=0.0
    )
    start, epoch_start = time.perf_counter(), epoch * s.shape.steps

    def on_step(step: int) -> None:
        if s.clock.due(epoch_start + step) and step < s.shape.steps:
            _save_mid_epoch(s, step, time.perf_counter() - start)

    watch = BatchWatch(first_step)
    callback = batch_callback(
        watch, (s.progress, task), s.stop, epoch_start, s.state.metric_state, on_step, s.shape.reset_every
    )
    logs = fit_batches(s.model, batches, s.plan.device, [callback])
    seconds = time.perf_counter() - start
    s.progress.remove_task(task)
    if logs.get("peer_stop") and s.stop.signum is None:  # multi_worker: another worker was asked to stop
        s.stop.signum = signal.SIGTERM
    if watch.bad_step is not None or not math.isfinite(logs["loss"][-1]):
        raise TrainingError(
            f"loss became {logs['loss'][-1]} at epoch {epoch + 1}, batch {watch.bad_step}; "
            f"nothing was saved from it and the last good checkpoint in {s.run_dir} is kept; "
            "lower train.learning_rate or set train.clipnorm"
        )
    if s.stop.signum is not None and watch.last_step < s.shape.steps:
        _save_mid_epoch(s, watch.last_step, seconds)  # the batch in flight finished: keep it
        raise _interrupted(s, epoch, epoch, watch.last_step)
    return _Fit(float(logs["loss"][-1]), float(logs["accuracy"][-1]), lr, seconds)


def _epoch_data(s: Session, epoch: int, order: np.ndarray, first_step: int) -> tf.data.Dataset:
    """The epoch's batches from `first_step` on (non-zero when a run resumes part-way through it)."""
    tcfg, data = s.cfg.train, s.data
    rows = slice(first_step * tcfg.batch_size, None)
    if data.train_images is not None and s.cfg.data.augment is not None:
        used = order[: s.shape.images_used][rows]  # stateful: whole batches only (never chunked here)
        index = pixel_index(s.cfg.data.layout, input_permutation(s.cfg.data))
        key = (s.cfg.seed, epoch, first_step)
        return augmented_batches(
            data.train_images[used], data.train.y[used], tcfg.batch_size, s.cfg.data.augment, index, key
        )
    xs, ys, ws = epoch_batches(data.train.x, data.train.y, order, tcfg, s.cfg.data.chunk_steps)
    return array_batches(xs[rows], ys[rows], tcfg.batch_size, None if ws is None else ws[rows])


def _save_mid_epoch(s: Session, step: int, seconds: float) -> None:
    s.state.mid_epoch(s.model, s.cfg.train.stateful, step, seconds).save(s.run_dir, "last", s.model)
    s.clock.saved(s.state.epoch * s.shape.steps + step)


def _end_epoch(s: Session, epoch: int, fit: _Fit) -> bool:
    """Validate, checkpoint and log a finished epoch; True if the run should stop early."""
    val = s.scorer.score(s.model, s.data.val) if s.data.val is not None else None
    row = {
        "epoch": epoch + 1, "loss": fit.loss, "accuracy": fit.accuracy,
        "val_loss": val.loss if val else None, "val_accuracy": val.accuracy if val else None,
        "lr": fit.lr, "seconds": round(fit.seconds, 3),
    }  # fmt: skip
    # Without validation, the latest epoch is the best one we can name.
    improved = s.state.end_epoch(row, val.accuracy if val else fit.accuracy, fit.seconds)
    s.state.capture(s.model, s.cfg.train.stateful)
    # `best` before `last`: whatever `last` says about the best epoch is then already on disk.
    if improved:
        s.state.save(s.run_dir, "best", s.model)
    s.state.save(s.run_dir, "last", s.model)
    s.clock.saved(s.state.epoch * s.shape.steps)
    runs.write_history(s.run_dir, s.state.history)
    plot_curves(s.state.history, s.state.best_epoch, s.run_dir / CURVES)  # refreshed for a person watching
    s.tensorboard.log(epoch + 1, row)
    s.console.print(
        f"epoch {epoch + 1:>3}/{s.cfg.train.epochs}  loss {fit.loss:.4f}  acc {fit.accuracy:.4f}  "
        f"val_loss {format_value(row['val_loss'])}  val_acc {format_value(row['val_accuracy'])}  "
        f"lr {fit.lr:.2e}  {fit.seconds:.1f}s{'  *best' if improved else ''}",
        highlight=False,
    )
    if s.on_epoch_end is not None and s.on_epoch_end(EpochEnd(epoch + 1, row, s.model)):
        return True
    patience = s.cfg.train.early_stopping_patience
    if patience is not None and s.state.epochs_without_improvement >= patience:
        s.console.print(f"early stopping: no validation improvement for {patience} epochs", highlight=False)
        return True
    return False


def _interrupted(s: Session, epoch: int, saved_epoch: int, saved_step: int) -> Interrupted:
    signum = s.stop.signum or signal.SIGINT
    where = f"epoch {saved_epoch}" if not saved_step else f"epoch {saved_epoch + 1}, batch {saved_step}"
    return Interrupted(
        f"stopped by {signal.Signals(signum).name} during epoch {epoch + 1}; checkpoints/last holds {where}; "
        f"resume with: mnist-rnn train --resume {s.run_dir}",
        signum,
    )


# ------------------------------------------------------------------------------------ final test


def _final_test(s: Session, stopped_early: bool) -> dict[str, Any]:
    """Score the best checkpoint as saved on disk (exactly what `mnist-rnn eval` loads); metrics.json."""
    best_model, _ = runs.load_checkpoint(s.run_dir, "best", warn=s.console.print)
    test = s.scorer.score(best_model, s.data.test)
    fit_seconds, epochs_run = s.state.fit_seconds, len(s.state.history)
    metrics = {
        "best_val_accuracy": s.state.best if s.data.val is not None else None,
        "best_epoch": s.state.best_epoch,
        "epochs_run": epochs_run,
        "stopped_early": stopped_early,
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "test_checkpoint": "best",
        "train_seconds": round(fit_seconds, 3),
        "samples_per_second": (
            round(epochs_run * s.shape.images_used / fit_seconds, 1) if fit_seconds else None
        ),
        "train_samples": len(s.data.train),
        "test_samples": test.samples,
        "device": s.plan.device,
        "cpu": cpu_description(),  # speed depends on it: the model and its vector extensions
        "cpu_threads": s.cfg.train.cpu_threads,  # as configured; the count in effect: "plan" below
        "plan": s.plan.record(),  # how the run was planned to execute (execution: what the model runs)
        "gpu": gpu_description(s.plan.device),  # None on a CPU
        "cudnn": cudnn_report(s.cfg.model, s.plan.device),  # on a GPU: used, or which keys rule it out
        "execution": asdict(s.execution),  # the path that trained it: which recurrent kernel, XLA or not
        "final_weights_sha256": weights_digest(s.model),  # the last epoch's weights (workers, reruns)
    }
    runs.write_metrics(s.run_dir, metrics)
    s.tensorboard.log_hparams(s.run_dir.name, flatten(config_to_dict(s.cfg)), metrics)
    s.console.print(summary_table(metrics))
    if s.plan.strategy is not None:  # to compare workers and reruns
        s.console.print(f"final weights sha256: {metrics['final_weights_sha256']}", highlight=False)
    return metrics
