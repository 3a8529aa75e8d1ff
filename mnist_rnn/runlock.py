"""The run lock: `run_dir/.lock` holds the PID and host of the one process writing a run.

A second writer is refused with the PID to wait for or stop; a lock left by a process of this host that no
longer exists (kill -9, power cut) is taken over; `runs.run_status` reads a live lock as `running`. A lock
held on another host (a sweep's folder on a shared filesystem) is never taken over: its process cannot be
seen from here, so it counts as alive.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mnist_rnn.errors import RunError

LOCK = ".lock"
HOST = socket.gethostname()


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir/.lock` (our PID) while writing a run, so a second writer is refused.

    A lock left by a process that no longer exists (kill -9, power cut) is taken over.
    """
    path = run_dir / LOCK
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            owner, host = _lock_owner(path)
            if owner is not None and host != HOST:
                raise RunError(
                    f"{run_dir}: process {owner} on host {host} is writing this run; wait for it to finish, "
                    f"or stop it there and delete {path}, then retry"
                ) from None
            if owner is not None and owner != os.getpid() and process_alive(owner):
                raise RunError(
                    f"{run_dir}: another process (pid {owner}) is writing this run; wait for it to finish "
                    f"or stop it (kill {owner}), then retry"
                ) from None
            path.unlink(missing_ok=True)  # stale: its writer is gone
    else:  # pragma: no cover - lost a race twice
        raise RunError(f"{run_dir}: could not take the run lock {path}; retry")
    try:
        os.write(fd, f"{os.getpid()} {HOST}".encode())
        os.close(fd)
        yield
    finally:
        path.unlink(missing_ok=True)


def lock_holder(run_dir: Path) -> int | None:
    """The PID of a live process writing `run_dir` (one on another host counts as live), or None (no lock,
    or its writer on this host is gone)."""
    owner, host = _lock_owner(run_dir / LOCK)
    return owner if owner is not None and (host != HOST or process_alive(owner)) else None


def _lock_owner(path: Path) -> tuple[int | None, str]:
    """(pid, host) from the lock file; a lock without a host (written before hosts were recorded) is ours."""
    try:
        pid, _, host = path.read_text().strip().partition(" ")
        return int(pid or "0") or None, host or HOST
    except (OSError, ValueError):
        return None, HOST


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
