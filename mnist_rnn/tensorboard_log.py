"""Per-epoch TensorBoard scalars of a run, written exactly once each, whatever a crash interrupted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_rnn import runs


class TensorBoardLog:
    """Per-epoch scalars under tensorboard/{train,validation}, each (tag, epoch) written exactly once.

    The event files are their own record of what was logged: a resumed run reads them back and writes
    only the scalars of history rows they lack. (A separate "last logged epoch" marker cannot be kept in
    step with them: a kill between flushing the events and writing the marker repeats an epoch, and
    writing the marker first loses one.)"""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.writers: dict[str, Any] = {}
        self.logged: dict[str, set[tuple[str, int]]] = {}
        self.base = run_dir / runs.TENSORBOARD
        if enabled:
            import tensorflow as tf

            base = run_dir / runs.TENSORBOARD
            # Read before creating the writers, whose new (empty) event files hold nothing yet.
            self.logged = {name: logged_scalars(base / name) for name in ("train", "validation")}
            self.writers = {name: tf.summary.create_file_writer(str(base / name)) for name in self.logged}

    def log_hparams(self, trial: str, config: dict[str, Any], metrics: dict[str, Any]) -> None:
        """The flattened config and the final figures, for TensorBoard's HParams dashboard (one session
        per run, in tensorboard/ itself; the per-epoch scalars in train/ and validation/ show there too)."""
        if not self.writers:
            return
        import tensorflow as tf
        from tensorboard.plugins.hparams import api as hp

        with tf.summary.create_file_writer(str(self.base)).as_default(step=metrics.get("epochs_run", 0)):
            hp.hparams({key: hparam_value(value) for key, value in config.items()}, trial_id=trial)
            for key in HPARAM_METRICS:
                if metrics.get(key) is not None:
                    tf.summary.scalar(key, metrics[key])
            tf.summary.flush()

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


HPARAM_METRICS = ("test_accuracy", "test_loss", "best_val_accuracy")


def hparam_value(value: Any) -> bool | int | float | str:
    """The HParams dashboard takes booleans, numbers and strings: lists and None become text."""
    return value if isinstance(value, bool | int | float | str) else str(value)
