"""Every path under a run directory, and the only code that writes there.

    runs/<YYYYmmdd-HHMMSS>-<name>/
      config.yaml        resolved config (rerun with `mnist-rnn train --config runs/.../config.yaml`)
      permutation.json   permuted layouts only: the order the model reads the 784 pixels in
      command.txt        command line, versions, device
      checkpoints/last/  model.keras (weights + optimizer) and state.json, after every epoch
      checkpoints/best/  the same, for the best validation accuracy
      history.csv        one row per epoch
      metrics.json       final figures; eval.json from `mnist-rnn eval`
      status.json        running | finished | interrupted | failed, with the parameter count and a message
      curves.png         loss/accuracy per epoch (plots.py); eval adds confusion_matrix.png, errors.png
      tensorboard/       event files (per-epoch scalars, and the run's hparams at its end)

Files are written atomically (temporary sibling, fsync, rename), and a checkpoint directory is swapped
in only once complete, so an interruption never leaves a half-written file in place of a good one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_rnn.config import Config
from mnist_rnn.config_files import dump_config, load_config
from mnist_rnn.errors import RunError
from mnist_rnn.layouts import input_permutation
from mnist_rnn.runlock import lock_holder

if TYPE_CHECKING:
    import keras

CONFIG = "config.yaml"
PERMUTATION = "permutation.json"
COMMAND = "command.txt"
HISTORY = "history.csv"
METRICS = "metrics.json"
EVAL = "eval.json"
STATUS = "status.json"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
MODEL_FILE = "model.keras"
STATE_FILE = "state.json"
CHECKPOINT_NAMES = ("best", "last")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


# -------------------------------------------------------------------------------- atomic writes


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """A fresh folder beside `target` to write into; when the block ends it replaces `target` (the old
    one removed only once the new is in place), and if the block raises it is removed, `target` intact."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    previous = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, previous)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    shutil.rmtree(previous, ignore_errors=True)


# ------------------------------------------------------------------------------- run directories


def plan_run_dir(root: Path, name: str, run_dir: Path | None, now: datetime | None = None) -> Path:
    """Choose the run directory without creating it; refuse one that would clobber another run."""
    if run_dir is not None:
        if run_dir.exists() and not run_dir.is_dir():
            raise RunError(f"{run_dir}: exists and is not a directory; pass a directory to --run-dir")
        if run_dir.is_dir() and any(run_dir.iterdir()):
            raise RunError(f"{run_dir}: run directory is not empty; pass a new or empty --run-dir")
        return run_dir
    if root.exists() and not root.is_dir():
        raise RunError(f"{root}: run.root exists and is not a directory; set run.root to a directory")
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    candidate = root / f"{stamp}-{name}"
    suffix = 2
    while candidate.exists():  # two runs started in the same second
        candidate = root / f"{stamp}-{name}-{suffix}"
        suffix += 1
    return candidate


def create_run_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / CHECKPOINTS).mkdir(exist_ok=True)
    except OSError as exc:
        raise RunError(f"{path}: cannot create the run directory ({exc.strerror}); choose another") from None
    return path


def write_config(run_dir: Path, cfg: Config) -> None:
    atomic_write_text(run_dir / CONFIG, dump_config(cfg))
    order = input_permutation(cfg.data)
    if order is not None:  # part of the model's input contract: kept beside the config, for any reader
        atomic_write_json(
            run_dir / PERMUTATION, {"seed": cfg.data.permutation_seed, "order": [int(i) for i in order]}
        )


def write_command(run_dir: Path, argv: Sequence[str], facts: dict[str, str]) -> None:
    lines = ["command: " + shlex.join(argv), *(f"{key}: {value}" for key, value in facts.items())]
    atomic_write_text(run_dir / COMMAND, "\n".join(lines) + "\n")


def read_command_facts(run_dir: Path) -> dict[str, str]:
    """The facts `write_command` recorded beside the command (versions, device, cpu, gpu); {} if none."""
    path = run_dir / COMMAND
    lines = path.read_text().splitlines()[1:] if path.is_file() else []
    return dict(line.split(": ", 1) for line in lines if ": " in line and not line.startswith("resumed "))


def append_command(run_dir: Path, argv: Sequence[str], when: str) -> None:
    """Record a resume under the original command, so command.txt tells the run's whole story."""
    text = (run_dir / COMMAND).read_text() if (run_dir / COMMAND).exists() else ""
    atomic_write_text(run_dir / COMMAND, text + f"resumed {when}: {shlex.join(argv)}\n")


def write_history(run_dir: Path, rows: Iterable[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in HISTORY_COLUMNS})
    atomic_write_text(run_dir / HISTORY, buf.getvalue())


def read_history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / HISTORY, newline="") as f:
        return list(csv.DictReader(f))


def write_status(run_dir: Path, status: str, **facts: Any) -> None:
    """The run's lifecycle: `running` when training starts, then `finished`, `interrupted` or `failed`
    (a kill -9 leaves `running` behind a dead lock, which `runs list` reports as interrupted)."""
    record = {**read_status(run_dir), **facts, "status": status, "updated": _now()}
    atomic_write_json(run_dir / STATUS, record)


def read_status(run_dir: Path) -> dict[str, Any]:
    """status.json, or {} for a run made before runs recorded their status."""
    path = run_dir / STATUS
    return read_json(path) if path.is_file() else {}


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from the run directory; RunError naming the file if it is damaged."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot be read ({exc}); the file is damaged, remove or restore it") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object; the file is damaged, remove or restore it")
    return data


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def write_metrics(run_dir: Path, metrics: dict[str, Any], name: str = METRICS) -> None:
    atomic_write_json(run_dir / name, metrics)


# ----------------------------------------------------------------------------------- checkpoints


def checkpoint_dir(run_dir: Path, which: str) -> Path:
    return run_dir / CHECKPOINTS / which


def save_checkpoint(run_dir: Path, which: str, model: keras.Model, state: dict[str, Any]) -> Path:
    """Write model (weights + optimizer) and state into a fresh folder, then swap it in for `which`.

    The checkpoint it replaces is kept as `<which>.prev`: if a crash lands between the two renames, or
    the new one later fails to load, the previous one is still there (load_checkpoint falls back to it).
    """
    final = checkpoint_dir(run_dir, which)
    tmp = final.with_name(f".{which}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save(tmp / MODEL_FILE)
    with open(tmp / MODEL_FILE, "rb") as f:
        os.fsync(f.fileno())
    atomic_write_json(tmp / STATE_FILE, state)
    _fsync_dir(tmp)
    previous = final.with_name(f"{which}.prev")
    if final.exists():
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(final, previous)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    return final


def _candidates(run_dir: Path, which: str) -> list[Path]:
    if which not in CHECKPOINT_NAMES:
        raise RunError(f"unknown checkpoint {which!r}; use one of: {', '.join(CHECKPOINT_NAMES)}")
    paths = (checkpoint_dir(run_dir, which), checkpoint_dir(run_dir, f"{which}.prev"))
    return [p for p in paths if (p / MODEL_FILE).is_file()]


def find_checkpoint(run_dir: Path, which: str) -> Path:
    found = _candidates(run_dir, which)
    if not found:
        raise RunError(
            f"{run_dir}: no '{which}' checkpoint (expected {checkpoint_dir(run_dir, which) / MODEL_FILE}); "
            "has this run finished an epoch?"
        )
    return found[0]


def read_checkpoint_state(run_dir: Path, which: str) -> dict[str, Any]:
    """state.json of a checkpoint (epoch, step, best so far, counters) without loading the model."""
    path = find_checkpoint(run_dir, which) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunError(
            f"{path}: checkpoint state cannot be read ({exc}); the checkpoint is damaged"
        ) from None


def load_checkpoint(
    run_dir: Path, which: str, warn: Callable[[str], Any] | None = None
) -> tuple[keras.Model, dict[str, Any]]:
    """Load `which` (model and state); if it is damaged, warn and load the previous one instead."""
    import keras

    import mnist_rnn.fused_lstm  # noqa: F401  (registers FusedLSTM for loading)
    import mnist_rnn.layers  # noqa: F401  (and JANETCell)
    import mnist_rnn.sharded_step  # noqa: F401  (and ShardedModel)

    problems = []
    for path in _candidates(run_dir, which) or [find_checkpoint(run_dir, which)]:
        try:
            state = json.loads((path / STATE_FILE).read_text()) if (path / STATE_FILE).exists() else {}
            model = keras.saving.load_model(path / MODEL_FILE)
        except Exception as exc:  # zip, h5 and json errors all mean the same thing here
            problems.append(f"{path}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        if problems and warn is not None:
            warn(f"warning: checkpoint cannot be loaded ({problems[0]}); using the previous one, {path}")
        return model, state
    raise RunError(f"{run_dir}: no loadable '{which}' checkpoint ({'; '.join(problems)})")


# ----------------------------------------------------------------------------------- reading runs


def resolve_run_dir(path: Path, checkpoint: str | None = None) -> tuple[Path, str]:
    """Accept a run directory or one of its checkpoint folders; return (run_dir, checkpoint): the one
    asked for, else the folder's, else `best`."""
    if not path.exists():
        raise RunError(f"{path}: no such run directory")
    if (path / MODEL_FILE).is_file() and path.parent.name == CHECKPOINTS:
        return path.parent.parent, checkpoint or path.name
    if not (path / CONFIG).is_file():
        raise RunError(f"{path}: not a run directory (no {CONFIG}); pass a folder made by `mnist-rnn train`")
    return path, checkpoint or "best"


def read_run_config(run_dir: Path) -> Config:
    return load_config(run_dir / CONFIG)


class RunStatus(StrEnum):
    """Where a run stands, told from its files alone (so a run copied from another machine reads the same)."""

    running = "running"  # its lock is held by a live process
    finished = "finished"  # metrics.json is written (the final test ran)
    pruned = "pruned"  # a sweep stopped it early for poor validation accuracy (status.json says so)
    failed = "failed"  # status.json says so (the error is in it)
    interrupted = "interrupted"  # it has a checkpoint to resume from (a signal, or a kill -9)
    unsaved = "unsaved"  # stopped before its first checkpoint: nothing to resume, nothing to keep


def run_status(run_dir: Path) -> RunStatus:
    """The one reading of a run's status, for `runs list`, the sweep and `TrainedRun`."""
    if lock_holder(run_dir) is not None:
        return RunStatus.running
    if read_status(run_dir).get("status") == RunStatus.pruned:
        return RunStatus.pruned
    if (run_dir / METRICS).is_file():
        read_json(run_dir / METRICS)  # a damaged file is an error, not a finished run
        return RunStatus.finished
    if read_status(run_dir).get("status") == "failed":
        return RunStatus.failed
    if not _candidates(run_dir, "last"):  # `last`, or the previous one a crash left beside it
        return RunStatus.unsaved
    return RunStatus.interrupted
