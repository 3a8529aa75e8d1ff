"""The workers of a `train.strategy: multi_worker` run: who writes the run directory, and what a lost worker
looks like to the others.

Every worker runs the same steps in lockstep (the collectives of training, validation and the final test),
saving included, but only the chief writes into the run directory. The others train into a private scratch
copy in the system's temporary folder, deleted when they finish; to resume, each starts from a copy of the
chief's run directory, so every worker restores the same checkpoint (the run directory must be readable by
all of them, e.g. on a shared filesystem). A worker that dies makes the others' collectives fail (TensorFlow's
peer health check, or `distribute.COLLECTIVE_TIMEOUT_S`); `lost_worker` words that as one line.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_rnn import runlock, runs
from mnist_rnn.errors import TrainingError

if TYPE_CHECKING:
    import keras


@contextmanager
def worker_scratch(run_dir: Path, resume: bool) -> Iterator[Path]:
    """A non-chief worker's stand-in for `run_dir` (a copy of it to resume), removed afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix="mnist-rnn-worker-")) / run_dir.name
    try:
        if resume:
            skip = shutil.ignore_patterns(runlock.LOCK, runs.TENSORBOARD, "export")
            shutil.copytree(run_dir, scratch, ignore=skip)
        yield scratch
    finally:
        shutil.rmtree(scratch.parent, ignore_errors=True)


def lost_worker(exc: BaseException, run_dir: Path) -> TrainingError | None:
    """The one-line error for a collective that failed because a worker died or hung, else None."""
    import tensorflow as tf

    failures = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)
    if not isinstance(exc, failures):
        return None
    first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return TrainingError(
        f"the cluster lost a worker ({type(exc).__name__}: {first[:160]}); this worker stopped too; "
        f"when every worker is back, start each again with: mnist-rnn train --resume {run_dir}"
    )


def weights_digest(model: keras.Model) -> str:
    """SHA-256 of the model's weights in order: equal digests, equal weights (workers, reruns)."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(weight.tobytes())
    return digest.hexdigest()
