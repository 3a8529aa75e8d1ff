"""`mnist-rnn sweep`: hyperparameter search on Optuna. A study in a database holds the plan and the results,
so several processes (`--workers`) and machines (`--join`) can work on one sweep, and a killed sweep
continues where it stood. Each trial is an ordinary run (`run_training`) in its own folder:

    <run.root>/<stamp>-<name>/
      sweep.yaml           the study's name and storage (never a password), for --join/--resume by folder
      base.yaml            the resolved config every trial starts from
      study.db             the Optuna study on SQLite (the default storage; a server URL replaces it)
      001-<key=value...>/  one run per trial point, numbered in the order the points were drawn
      sweep.csv            one row per trial point, best validation accuracy first, written at the end

The plan travels in the study (its user attribute `mnist_rnn`: the resolved config, the search space, the
sampler, the pruner and the package version), so a joining machine needs no config file.

How the study is stored and counted is in sweep_study.py; how one process runs trials, sweep_worker.py.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import optuna
import yaml
from rich.console import Console

import mnist_rnn
from mnist_rnn import runs
from mnist_rnn.config import Strategy
from mnist_rnn.config_files import dump_config, load_config
from mnist_rnn.errors import ConfigError, Interrupted, RunError
from mnist_rnn.sweep_results import write_results
from mnist_rnn.sweep_space import as_yaml, parse_space
from mnist_rnn.sweep_study import (
    BASE_FILE,
    STORAGE_ENV,
    Plan,
    open_storage,
    read_plan,
    shown_url,
    sqlite_file,
    sqlite_url,
)
from mnist_rnn.sweep_worker import Worker

SWEEP_FILE = "sweep.yaml"
WORKER_ENV = "MNIST_RNN_SWEEP_WORKER"  # a --workers process's index (its sampler's seed offset)
SAMPLERS, PRUNERS = ("tpe", "random"), ("none", "median", "hyperband")


# ------------------------------------------------------------------------------------------ planning


def plan_sweep(config: Path, overrides: list[str], grid: list[str], search: list[str],
               trials: int | None, sampler: str | None, prune: str | None) -> Plan:  # fmt: skip
    """Parse and validate everything a sweep will run, before anything is written."""
    params = parse_space(grid, search)
    base = load_config(config, overrides)
    if base.data.validation == 0:
        raise ConfigError("a sweep chooses on validation accuracy: set data.validation above 0")
    if base.train.strategy is Strategy.multi_worker:
        raise ConfigError(
            "train.strategy: multi_worker cannot run inside a sweep (a trial is one process); "
            "use none or mirrored, and spread the sweep over machines with --join"
        )
    if grid and (trials is not None or sampler is not None):
        raise ConfigError(
            "--grid runs every combination once: drop --trials and --sampler (they are for --search)"
        )
    if search and trials is None:
        raise ConfigError("--search needs --trials N (how many points to try)")
    if sampler is not None and sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {sampler}: use one of {', '.join(SAMPLERS)}")
    if prune is not None and prune not in PRUNERS:
        raise ConfigError(f"--prune {prune}: use one of {', '.join(PRUNERS)}")
    for number, combo in enumerate(itertools.product(*(p.corners() for p in params)), 1):
        sets = [f"{p.key}={as_yaml(v)}" for p, v in zip(params, combo, strict=True)]
        try:
            load_config(config, [*overrides, *sets])
        except ConfigError as exc:
            raise ConfigError(f"sweep combination {number} ({', '.join(sets)}): {exc}") from None
    size = len(list(itertools.product(*(p.choices for p in params)))) if grid else trials
    assert size is not None
    if size < 1:
        raise ConfigError(f"--trials {size}: give at least 1")
    return Plan(
        version=mnist_rnn.__version__, config=dump_config(base), grid=grid, search=search, trials=size,
        sampler="grid" if grid else sampler or "tpe", prune=prune or ("none" if grid else "median"),
        seed=base.seed,
    )  # fmt: skip


def start_sweep(plan: Plan, name: str | None, storage: str | None, workers: int, console: Console) -> Path:
    """Create the sweep folder and its study, then work on it with `workers` processes (0: only create)."""
    base = yaml.safe_load(plan.config)
    sweep_dir = runs.plan_run_dir(Path(base["run"]["root"]), name or f"{base['name']}-sweep", None)
    url = storage or os.environ.get(STORAGE_ENV) or sqlite_url(sweep_dir)
    server = None if url.startswith("sqlite") else open_storage(url)  # a bad server: nothing written yet
    try:
        sweep_dir.mkdir(parents=True)
    except OSError as exc:
        raise RunError(
            f"{sweep_dir}: cannot create the sweep folder ({exc.strerror}); check run.root"
        ) from None
    try:
        study = optuna.create_study(
            storage=server or open_storage(url), study_name=sweep_dir.name, direction="maximize"
        )
        study.set_user_attr("mnist_rnn", asdict(plan))
    except BaseException:
        shutil.rmtree(sweep_dir, ignore_errors=True)
        raise
    _write_folder(sweep_dir, plan, url)
    console.print(
        f"sweep {sweep_dir.name}: {plan.trials} trial points, study in {shown_url(url)}", highlight=False
    )
    if workers == 0:
        console.print(f"created; work on it here with: mnist-rnn sweep --join {sweep_dir}", highlight=False)
        if server is not None:
            console.print(
                f"and on other machines with: mnist-rnn sweep --join {sweep_dir.name} --storage "
                f"{shown_url(url)} (the password from ~/.pgpass or {STORAGE_ENV})",
                highlight=False,
            )
        return sweep_dir
    return work(sweep_dir, url, plan, workers, console, plan.seed)


def join_sweep(target: str, storage: str | None, workers: int, console: Console) -> Path:
    """Work on an existing sweep: `target` is its folder, or its study's name on `storage`."""
    folder = Path(target)
    if (folder / SWEEP_FILE).is_file():
        recorded = _read_sweep_file(folder / SWEEP_FILE)
        url = storage or os.environ.get(STORAGE_ENV) or recorded["storage"]
        name = recorded["study"]
    elif folder.exists() or storage is None and STORAGE_ENV not in os.environ:
        raise RunError(
            f"{target}: not a sweep folder (no {SWEEP_FILE}); pass a folder made by mnist-rnn sweep, "
            f"or a study's name with --storage URL"
        )
    else:
        url, name = storage or os.environ[STORAGE_ENV], target
    if url.startswith("sqlite") and not sqlite_file(url).is_file():
        raise RunError(f"{sqlite_file(url)}: no such study database; pass the sweep folder or its --storage")
    plan = read_plan(open_storage(url), name)
    if plan.version != mnist_rnn.__version__:
        raise RunError(
            f"sweep {name} was made by mnist-rnn {plan.version}, this is {mnist_rnn.__version__}; "
            f"install {plan.version} to join it"
        )
    if not (folder / SWEEP_FILE).is_file():  # a machine joining by name gets its own copy of the folder
        folder = Path(yaml.safe_load(plan.config)["run"]["root"]) / name
        folder.mkdir(parents=True, exist_ok=True)
        _write_folder(folder, plan, url)
    worker = os.environ.get(WORKER_ENV)  # set by --workers: its own seed; a joining machine draws at random
    return work(folder, url, plan, workers, console, plan.seed + int(worker) if worker else None)


def _write_folder(sweep_dir: Path, plan: Plan, url: str) -> None:
    record = {"study": sweep_dir.name, "storage": shown_url(url), "version": plan.version}
    runs.atomic_write_text(sweep_dir / SWEEP_FILE, yaml.safe_dump(record, sort_keys=False))
    runs.atomic_write_text(sweep_dir / BASE_FILE, plan.config)


def _read_sweep_file(path: Path) -> dict[str, str]:
    try:
        record = yaml.safe_load(path.read_text())
        assert isinstance(record, dict) and {"study", "storage"} <= set(record)
    except (OSError, yaml.YAMLError, AssertionError):
        raise RunError(
            f"{path}: not a sweep of this version (it needs study and storage); start a new sweep"
        ) from None
    return record


# ------------------------------------------------------------------------------------------ working


def work(sweep_dir: Path, url: str, plan: Plan, workers: int, console: Console, seed: int | None) -> Path:
    """Run trials until the plan is done: here (one worker) or in `workers` processes; then the results.
    `seed` seeds this process's sampler (None: at random, for a machine that joins)."""
    if workers > 1:
        _run_processes(sweep_dir, url, workers, console)
    else:
        Worker(sweep_dir, url, plan, console, seed).run()
    if WORKER_ENV in os.environ:  # one of --workers' processes: the process that started it reports
        return sweep_dir
    return write_results(sweep_dir, open_storage(url), plan, console)


def _run_processes(sweep_dir: Path, url: str, workers: int, console: Console) -> None:
    """`workers` processes of `mnist-rnn sweep --join`, each pinned to its share of this machine's cores
    (so two TensorFlow processes do not fight over the same ones); the storage URL goes by environment."""
    cores = sorted(os.sched_getaffinity(0))
    shares = [cores[i::workers] or cores for i in range(workers)]
    env = {**os.environ, STORAGE_ENV: url}
    command = [sys.executable, "-m", "mnist_rnn", "sweep", "--join", str(sweep_dir)]
    procs = []
    for i, share in enumerate(shares):
        console.print(f"sweep {sweep_dir.name}: worker {i + 1}/{workers} on cores {share}", highlight=False)
        procs.append(subprocess.Popen(
            command, env={**env, WORKER_ENV: str(i)}, stdout=2,  # to stderr: stdout is for our folder's name
            preexec_fn=_pin(share),
        ))  # fmt: skip
    resume = f"continue the whole sweep with: mnist-rnn sweep --resume {sweep_dir}"
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:  # the terminal's Ctrl-C reached the workers too: they save and queue
        codes = [p.wait() for p in procs]
        raise Interrupted(f"stopped by SIGINT; {resume}", signal.SIGINT) from None
    stopped = [code - 128 for code in codes if code > 128]  # 130, 143: a worker stopped by a signal
    if stopped:  # (the CLI's SIGINT handling may have kept the KeyboardInterrupt from this process)
        raise Interrupted(f"stopped by {signal.Signals(stopped[0]).name}; {resume}", stopped[0])
    if any(codes):
        raise RunError(f"sweep workers exited with codes {codes} (their errors are above); {resume}")


def _pin(cores: list[int]) -> Callable[[], None]:
    return lambda: os.sched_setaffinity(0, cores)
