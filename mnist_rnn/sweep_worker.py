"""One process's share of a sweep: Optuna trials one at a time, each an ordinary run (`run_training`) in
the sweep folder, numbered by its point's place in the sweep. A retried trial resumes its point's run from
its checkpoint; a run finished before its process died is scored from its files, not trained again; a
trial the pruner stops is marked `pruned` in its run's status. A dead process of this host is seen at once
(its PID), so `--resume` right after a crash does not wait for the heartbeat's grace period. Ctrl-C queues
the interrupted trial again before the process exits.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import optuna
import yaml
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from rich.console import Console

from mnist_rnn import runlock, runs
from mnist_rnn.catalog import list_runs
from mnist_rnn.config import Config
from mnist_rnn.errors import Interrupted, RunError, TrainingError
from mnist_rnn.session import EpochEnd
from mnist_rnn.sweep_space import grid_space, label
from mnist_rnn.sweep_study import (
    BASE_FILE,
    STORAGE_ENV,
    Plan,
    drawn_points,
    first_number,
    open_storage,
    origin_of,
    retry_callback,
)
from mnist_rnn.train import run_training

RECYCLE_MIB = 1024  # a worker grown by this much since its first trial continues in a fresh process
RECYCLE_ENV = "MNIST_RNN_SWEEP_RECYCLE_MIB"  # another bound (the tests set a tiny one)
GENERATION_ENV = "MNIST_RNN_SWEEP_GENERATION"  # how many times this worker has started afresh
POLL_SECONDS = 2.0  # how often a worker with nothing left to draw looks at the trials still running


class Worker:
    """One process's share of a sweep: Optuna trials, one at a time, each a run in the sweep folder."""

    def __init__(
        self,
        sweep_dir: Path,
        url: str,
        plan: Plan,
        console: Console,
        seed: int | None,
    ) -> None:
        self.sweep_dir, self.url, self.plan, self.console = sweep_dir, url, plan, console
        self.storage = open_storage(url)
        self.params = plan.params()
        self.current: optuna.Trial | None = None
        self.study = optuna.load_study(
            study_name=sweep_dir.name,
            storage=self.storage,
            sampler=_sampler(plan, seed),
            pruner=_pruner(plan),
        )

    def run(self) -> None:
        self._retry_dead_local_trials()
        baseline = None  # resident memory after the first trial (TensorFlow's own warm-up is in it)
        while self._work_left():
            grown = 0.0 if baseline is None else _rss_mib() - baseline
            if grown > _recycle_mib():
                self._recycle(grown)

            self.current = None
            try:
                self.study.optimize(self._objective, n_trials=1, catch=(TrainingError, RunError))
            except (Interrupted, KeyboardInterrupt) as exc:
                if self.current is not None:  # Optuna marked it failed; queue it to resume
                    retry_callback()(self.study, self.storage.get_trial(self.current._trial_id))
                signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
                raise Interrupted(
                    f"{exc or 'stopped'}; or continue the whole sweep with: mnist-rnn sweep --resume "
                    f"{self.sweep_dir}",
                    signum,
                ) from None
            finally:
                _free_keras_memory()
            baseline = _rss_mib() if baseline is None else baseline

    def _recycle(self, grown: float) -> None:
        """Go on in a fresh process (same PID, same output): memory freed between trials is freed in
        Python and Keras, but TensorFlow's runtime keeps some of every trial (about 18 MiB for a small
        LSTM, measured over 10 trials), which a long sweep must not pile up."""
        self.console.print(
            f"sweep {self.sweep_dir.name}: this worker's memory grew by {grown:.0f} MiB; "
            "it goes on in a fresh process",
            highlight=False,
        )
        generation = int(os.environ.get(GENERATION_ENV, "0")) + 1
        os.environ.update({STORAGE_ENV: self.url, GENERATION_ENV: str(generation)})
        sys.stdout.flush(), sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "mnist_rnn", "sweep", "--join", str(self.sweep_dir)])

    def _work_left(self) -> bool:
        """True while a point is undrawn or queued; with every point drawn, wait for the trials still
        running elsewhere: one whose process dies is queued again (and run here), so no point is lost."""
        said = False
        while True:
            trials = self.study.get_trials(deepcopy=False)
            if (
                any(t.state is TrialState.WAITING for t in trials)
                or len(drawn_points(trials)) < self.plan.trials
            ):
                return True
            running = [t for t in trials if t.state is TrialState.RUNNING]
            if not running:
                return False
            if not said:
                self.console.print(
                    f"sweep {self.sweep_dir.name}: every point is taken; waiting for {len(running)} trial(s) "
                    "running in other processes",
                    highlight=False,
                )
                said = True
            self._retry_dead_local_trials()
            optuna.storages.fail_stale_trials(self.study)  # another host's, after the grace period
            time.sleep(POLL_SECONDS)

    def _retry_dead_local_trials(self) -> None:
        """Trials this host was running whose process is gone are failed and queued now, not after the
        heartbeat's grace period."""

        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            pid, host = trial.user_attrs.get("pid"), trial.user_attrs.get("host")
            if host != runlock.HOST or pid is None or runlock.process_alive(pid):
                continue
            try:
                self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:  # another process of this host got there first
                continue
            retry_callback()(self.study, self.storage.get_trial(trial._trial_id))

    def _objective(self, trial: optuna.Trial) -> float:
        self.current = trial
        frozen = self.storage.get_trial(trial._trial_id)
        retried = origin_of(frozen)
        # The point's place in the sweep: how many points were drawn before it (a retry keeps its place).
        first = first_number(frozen)
        point = len(drawn_points(self.study.get_trials(deepcopy=False), below=first)) + 1
        if retried is None and point > self.plan.trials:  # two workers asked for the last point at once
            trial.set_user_attr("surplus", True)
            self.study.stop()
            raise optuna.TrialPruned("the sweep's points are all taken")
        values = {p.key: p.suggest(trial) for p in self.params}
        run_dir = self.sweep_dir / f"{point:03d}-{label(values)}"
        process = {
            "host": runlock.HOST,
            "pid": os.getpid(),
            "generation": int(os.environ.get(GENERATION_ENV, 0)),
        }
        for key, value in {"run": run_dir.name, **process}.items():
            trial.set_user_attr(key, value)
        self.console.print(
            f"sweep {self.sweep_dir.name}: trial {point}/{self.plan.trials} {run_dir.name}"
            + ("" if retried is None else " (a retry: it resumes from its checkpoint)"),
            highlight=False,
        )
        return self._train(trial, run_dir, self.plan.trial_config(self.sweep_dir / BASE_FILE, values))

    def _train(self, trial: optuna.Trial, run_dir: Path, cfg: Config) -> float:
        status = runs.run_status(run_dir) if run_dir.exists() else None
        if status is runs.RunStatus.unsaved:
            shutil.rmtree(run_dir)  # killed before its first checkpoint: nothing in it to keep
        if status is runs.RunStatus.pruned:
            raise optuna.TrialPruned("pruned already")
        if status is not runs.RunStatus.finished:  # a finished run (its process died after) is not retrained
            pruned: list[int] = []

            def report(end: EpochEnd) -> bool:
                trial.report(float(end.row["val_accuracy"]), end.epoch)
                if trial.should_prune():
                    pruned.append(end.epoch)
                return bool(pruned)

            resume = status in (runs.RunStatus.interrupted, runs.RunStatus.running)  # running: the lock says
            command = ["mnist-rnn", "sweep", "--join", str(self.sweep_dir)]  # never the storage's password
            try:
                run_training(
                    cfg, run_dir, resume=resume, console=self.console, command=command, on_epoch_end=report
                )
            except (TrainingError, RunError) as exc:  # this trial fails; the sweep goes on
                self.console.print(f"  failed: {exc}", highlight=False, style="red")
                raise
            if pruned:
                runs.write_status(run_dir, runs.RunStatus.pruned, message=f"pruned after epoch {pruned[0]}")
                self.console.print(f"  pruned after epoch {pruned[0]}", highlight=False)
                raise optuna.TrialPruned(f"pruned after epoch {pruned[0]}")
        trial.set_user_attr("rss_mib", _rss_mib())
        (summary,) = [s for s in list_runs(self.sweep_dir) if s.path == str(run_dir)]
        assert summary.best_val is not None  # plan_sweep refused a config without validation
        return summary.best_val


def _sampler(plan: Plan, seed: int | None) -> optuna.samplers.BaseSampler:
    if plan.sampler == "grid":  # every worker must shuffle the grid alike: trial i is point i everywhere
        return optuna.samplers.GridSampler(grid_space(plan.params()), seed=plan.seed)
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)  # liar: workers do not pile up


def _pruner(plan: Plan) -> optuna.pruners.BasePruner:
    if plan.prune == "median":  # from the fourth trial, after the first epoch
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if plan.prune == "hyperband":
        epochs = yaml.safe_load(plan.config)["train"]["epochs"]
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def _free_keras_memory() -> None:
    """A trial's graphs and weights are not needed by the next one (trials in one process must not grow)."""
    import keras

    keras.utils.clear_session(free_memory=True)
    gc.collect()


def _recycle_mib() -> float:
    return float(os.environ.get(RECYCLE_ENV, RECYCLE_MIB))


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        kib = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
    return round(kib / 1024, 1)
