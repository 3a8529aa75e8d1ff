"""A sweep's study: what it runs (`Plan`, stored in the study so a joining machine needs no config file),
where it is stored (SQLite in the sweep folder by default, or a database server), and how its trials are
counted (a retry is the same point as the trial it repeats).

A trial's process that dies (kill -9, a lost machine) stops its heartbeat: after GRACE_SECONDS Optuna marks
the trial failed and RetryHeartbeatStaleTrialCallback queues it again with the same values (up to MAX_RETRY
times).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from mnist_rnn.config import Config
from mnist_rnn.config_files import load_config
from mnist_rnn.errors import RunError
from mnist_rnn.sweep_space import Param, as_yaml, parse_space

# Heartbeats and the retry callback are "experimental" in Optuna's terms (there since 2.8); we rely on them
# knowingly, so their warnings would only be noise in every trial's output.
warnings.filterwarnings("ignore", category=ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own lines say what happens

BASE_FILE, STUDY_DB = "base.yaml", "study.db"  # in the sweep folder
STORAGE_ENV = "MNIST_RNN_SWEEP_STORAGE"  # a server URL, so the password stays off the command line
HEARTBEAT_SECONDS, GRACE_SECONDS, MAX_RETRY = 10, 60, 3


@dataclass(frozen=True)
class Plan:
    """What a sweep runs, as stored in the study: every worker rebuilds its trials from this alone."""

    version: str
    config: str  # the resolved base config, YAML
    grid: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    trials: int = 0  # how many trial points: the grid's size, or --trials
    sampler: str = "grid"
    prune: str = "none"
    seed: int = 0

    def params(self) -> list[Param]:
        return parse_space(self.grid, self.search)

    def trial_config(self, base: Path, values: dict[str, Any]) -> Config:
        return load_config(base, [f"{key}={as_yaml(value)}" for key, value in values.items()])


def read_plan(storage: optuna.storages.BaseStorage, name: str) -> Plan:
    try:
        attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
    except KeyError:
        raise RunError(
            f"no sweep named {name} in that storage; check the name (its sweep folder's name)"
        ) from None
    if "mnist_rnn" not in attrs:
        raise RunError(f"study {name} was not made by mnist-rnn sweep; pass a sweep's study")
    return Plan(**attrs["mnist_rnn"])


@functools.cache  # one per URL and process: a worker, the plan's reader and the results share it
def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's database storage with heartbeats; a failed trial is queued again up to MAX_RETRY times."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=retry_callback(),
        )  # fmt: skip
    except Exception as exc:  # SQLAlchemy's and the driver's errors are many; all mean "cannot use this"
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RunError(
            f"--storage {shown_url(url)}: cannot open the study storage ({reason}); check the URL, that the "
            f"server runs, and the credentials (~/.pgpass or {STORAGE_ENV})"
        ) from None


def retry_callback() -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """Queue a failed trial again with the same values (up to MAX_RETRY times); the retry finds its run."""

    return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def sqlite_url(sweep_dir: Path) -> str:
    return f"sqlite:///{(sweep_dir / STUDY_DB).resolve()}"


def sqlite_file(url: str) -> Path:
    from sqlalchemy.engine import make_url

    return Path(make_url(url).database or "")


def shown_url(url: str) -> str:
    """The URL without its password (the only form written to files and messages; libpq then reads the
    password from ~/.pgpass)."""
    from sqlalchemy.engine import URL, make_url

    try:
        u = make_url(url)  # URL.set(password=None) would keep the password: rebuild the URL without it
        without = URL.create(u.drivername, u.username, None, u.host, u.port, u.database, u.query)
        return without.render_as_string(hide_password=False)
    except Exception:  # not a URL at all: still say nothing more than its scheme
        return url.split("://")[0] + "://..." if "://" in url else "(not a database URL)"


def origin_of(trial: optuna.trial.FrozenTrial) -> int | None:
    """For a retry, the number of the trial that first drew its point; None for a first try."""
    retried = trial.system_attrs.get("failed_trial")  # what RetryHeartbeatStaleTrialCallback records
    return None if retried is None else int(retried)


def first_number(trial: optuna.trial.FrozenTrial) -> int:
    """The number of the trial that first drew this trial's point (its own, for a first try)."""
    retried = origin_of(trial)
    return trial.number if retried is None else retried


def drawn_points(trials: list[optuna.trial.FrozenTrial], below: int | None = None) -> set[int]:
    """The trial points drawn so far (a retry is the same point as the trial it repeats)."""

    found = set()
    for t in trials:
        if (
            t.state is TrialState.WAITING
            or t.user_attrs.get("surplus")
            or below is not None
            and t.number >= below
        ):
            continue
        found.add(first_number(t))
    return found
