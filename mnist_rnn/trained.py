"""A trained model read one way: a run's checkpoint (`TrainedRun`) or an export folder (`ExportedModel`).

    best = TrainedRun.open(Path("runs/20261123-120000-default"))  # its best; or .../checkpoints/last
    best.cfg, best.status                           # read at once, no TensorFlow needed
    best.model, best.state                          # the checkpoint, loaded on first use
    probabilities = best.predictor()(sequences)     # plain-order (N, steps, features)
    streamer = best.streamer()                      # the same weights, a row of the image per call

`eval`, `export`, `predict` and `serve` read a run through here, so the config is read, the checkpoint found
and loaded once, and everything made from it (the scoring model, the predictor, the streaming twin) shares
that one load. `open_model` takes either a run or an export folder and answers the same questions of both.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_rnn import runs
from mnist_rnn.artefacts import MANIFEST, Predictor, load_artefact
from mnist_rnn.config import Config, Layout
from mnist_rnn.errors import RunError, UsageError
from mnist_rnn.layouts import input_permutation, sequence_shape, to_model_order
from mnist_rnn.mnist import IMAGE_SHAPE
from mnist_rnn.model import build_twin, fixed_rows_calls
from mnist_rnn.streaming import EveryStep, Streamer

if TYPE_CHECKING:
    import keras

# Rows of each model call of `predict` and `serve` (`TrainedRun.predictor`): one compiled shape, so
# a picture gets the same bits alone, in a batch of requests, or among files. 8 rows of the default model
# under XLA took 2.4 ms, one row through Keras's predict_on_batch 3.6 ms (2-core AVX-512 EPYC).
CALL_ROWS = 8


def keras_predict(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities (N, 10) in inference mode (dropout off).

    Fed as a plain tf.data pipeline, as training is: Keras's numpy adapter cost about 30% of a small model's
    inference throughput on 2 cores (34,600 vs 48,500 samples/s for LSTM(128) rows, docs/performance.md).
    """
    import tensorflow as tf

    from mnist_rnn.loop import without_autotune

    batches = without_autotune(tf.data.Dataset.from_tensor_slices(x).batch(batch_size).prefetch(2))
    return np.asarray(model.predict(batches, verbose=0))


def inference_model(cfg: Config, model: keras.Model) -> keras.Model:
    """The model that scores a run: the trained one, or for a stateful run (fixed batch, chunks) its
    stateless twin over whole sequences, so every image is scored and no carried state leaks in."""
    if not cfg.train.stateful:
        return model
    return build_twin(cfg.model, model.get_weights(), sequence_shape(cfg.data.layout))


class TrainedRun:
    """One checkpoint of a run: its config and status at once, the model and its state on first use."""

    def __init__(self, run_dir: Path, checkpoint: str, warn: Callable[[str], Any] | None = None) -> None:
        self.run_dir, self.checkpoint, self._warn = run_dir, checkpoint, warn
        self.cfg: Config = runs.read_run_config(run_dir)

    @classmethod
    def open(
        cls, path: Path, checkpoint: str | None = None, warn: Callable[[str], Any] | None = None
    ) -> TrainedRun:
        """A run directory or one of its checkpoints/<name> folders; `checkpoint` picks another (default
        the folder's, else best). `warn` hears of a damaged checkpoint replaced by its previous copy."""
        run_dir, chosen = runs.resolve_run_dir(path, checkpoint)
        return cls(run_dir, chosen, warn)

    @cached_property
    def path(self) -> Path:
        """The checkpoint folder (RunError if there is none): ask before loading data to fail early."""
        return runs.find_checkpoint(self.run_dir, self.checkpoint)

    @property
    def status(self) -> runs.RunStatus:
        return runs.run_status(self.run_dir)

    @property
    def layout(self) -> Layout:
        return self.cfg.data.layout

    @property
    def described(self) -> str:
        # Named by folder, not by path: serve shows this to whoever opens its page.
        return f"checkpoint {self.checkpoint} of {self.run_dir.resolve().name}"

    @cached_property
    def _loaded(self) -> tuple[keras.Model, dict[str, Any]]:
        return runs.load_checkpoint(self.run_dir, self.checkpoint, warn=self._warn)

    @property
    def model(self) -> keras.Model:
        return self._loaded[0]

    @property
    def state(self) -> dict[str, Any]:
        """The checkpoint's state.json (epoch, step, best so far)."""
        return self._loaded[1]

    @cached_property
    def inference_model(self) -> keras.Model:
        return inference_model(self.cfg, self.model)

    def predictor(self) -> Predictor:
        """Sequences in the layout's plain order (`make_sequences`) -> probabilities, as XLA calls of exactly
        CALL_ROWS rows (`model.fixed_rows_calls`: a picture's bits do not depend on the others). A permuted
        run's permutation is applied here, as an artefact applies it inside its graph. Faster than Keras's
        predict too: 10,000 test images of the default model in 2.1 s against 2.5 s (one run each)."""
        calls, order = fixed_rows_calls(self.inference_model, CALL_ROWS), input_permutation(self.cfg.data)
        return lambda x: calls(to_model_order(x, order))

    def every_step(self) -> EveryStep:
        """The probabilities after each row (a 28th of the sequence) for a batch of sequences in the
        layout's plain order: what `streamer()` gives a row at a time, in calls like `predictor`'s.
        ConfigError as `streamer`."""
        steps, features = sequence_shape(self.layout)
        order = input_permutation(self.cfg.data)
        weights = self.model.get_weights()
        return EveryStep(
            self.cfg.model, weights, (steps, features), CALL_ROWS, steps // IMAGE_SHAPE[0], order
        )

    def streamer(self, chunk_steps: int | None = None) -> Streamer:
        """A batch-1 stateful twin with this checkpoint's weights, `chunk_steps` steps per call (default: a
        row of the image, one step for rows, 28 for pixels). ConfigError for a model that cannot stream
        (a mean head, a bidirectional one)."""
        steps, features = sequence_shape(self.layout)
        chunk = chunk_steps or steps // IMAGE_SHAPE[0]
        order = input_permutation(self.cfg.data)
        return Streamer(self.cfg.model, self.model.get_weights(), features, chunk, order)


class ExportedModel:
    """An export folder: its manifest and its artefact, run in its own runtime."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest, self._predictor = load_artefact(folder)
        try:
            self.layout = Layout(self.manifest["preprocessing"]["layout"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RunError(f"{folder}: {MANIFEST} names no layout ({exc}); export the run again") from None
        self.described = f"{self.manifest['format']} export {folder.resolve().name}"

    def predictor(self) -> Predictor:
        return self._predictor

    def streamer(self, chunk_steps: int | None = None) -> Streamer:
        raise UsageError("per-row probabilities need a run directory (an export holds no state)")

    def every_step(self) -> EveryStep:
        raise UsageError("per-row probabilities need a run directory (an export holds no state)")


def is_export(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def open_model(source: Path) -> TrainedRun | ExportedModel:
    """A run directory (its best checkpoint, or the checkpoint folder given) or an export folder."""
    if not source.exists():
        raise RunError(f"{source}: no such run directory or export folder")
    return ExportedModel(source) if is_export(source) else TrainedRun.open(source)
