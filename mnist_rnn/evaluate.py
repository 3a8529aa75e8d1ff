"""Scoring: loss, accuracy, per-class accuracy and the confusion matrix of a model on one split.

Training's final test figures and `mnist-rnn eval` both go through a `Scorer`, on the checkpoint as saved
on disk, so metrics.json and eval.json agree for the same checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_rnn import runs
from mnist_rnn.config import Config, Device
from mnist_rnn.data import Split, load_dataset
from mnist_rnn.errors import UsageError
from mnist_rnn.execution import MIN_SHARD, plan_scoring, scoring_fused, scoring_shards, select_device
from mnist_rnn.layouts import READ_PER_CALL, input_permutation, sequence_shape, to_images
from mnist_rnn.mnist import NUM_CLASSES
from mnist_rnn.model import build_twin
from mnist_rnn.plots import CONFUSION, ERRORS, EXPLAIN, plot_confusion, plot_errors, plot_explain
from mnist_rnn.trained import TrainedRun, inference_model, keras_predict

if TYPE_CHECKING:
    import keras

# Keras clips probabilities to [eps, 1 - eps] in its cross-entropy; do the same so losses compare.
_EPSILON = 1e-7


@dataclass(frozen=True)
class Scores:
    loss: float
    accuracy: float
    per_class_accuracy: list[float]
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted class
    samples: int


def scores_from_probabilities(probs: np.ndarray, labels: np.ndarray) -> Scores:
    """probs (N, 10), labels (N,) -> Scores."""
    labels = labels.astype(np.int64)
    picked = np.clip(probs[np.arange(len(labels)), labels].astype(np.float64), _EPSILON, 1 - _EPSILON)
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class_total = confusion.sum(axis=1)
    per_class = np.divide(
        np.diag(confusion), per_class_total, out=np.zeros(NUM_CLASSES), where=per_class_total > 0
    )
    return Scores(
        loss=float(-np.log(picked).mean()),
        accuracy=float((predicted == labels).mean()),
        per_class_accuracy=[float(v) for v in per_class],
        confusion_matrix=confusion.tolist(),
        samples=int(len(labels)),
    )


class Scorer:
    """Class probabilities from a run's models on the fastest inference path measured (docs/performance.md).

    With `xla` (a CPU, no strategy: `execution.plan_scoring`), one stateless twin is built once and reused
    by every epoch's validation and the final test: each call passes it the model's current weights as
    values (no copy into the twin) and scores all its images in one graph of XLA calls, a batch each
    (`_score_in_one_graph`). The twin has Keras's own layers on rows, even for a fused-LSTM model (the fused
    kernel's unrolled forward pass was the slow part for two layers: 5,800 vs 10,300 images/s; XLA 1.3-2x
    Keras's graphs on every row model), and the fused LSTM's loop over chunks on pixels (`fused`, decided by
    `execution.scoring_fused` unless given). Without `xla` (GPU, strategies): Keras's predict on the model
    itself, or on its twin if it is stateful.
    """

    def __init__(self, cfg: Config, xla: bool, shards: int = 1, fused: bool | None = None) -> None:
        self.cfg, self.batch_size, self.xla, self.shards = cfg, cfg.train.eval_batch_size, xla, shards
        self.fused = scoring_fused(cfg) if fused is None else fused  # on the XLA path only
        self._twin: keras.Model | None = None
        self._score: Any = None
        self._sources: list[tuple[list[int | None], list[Any]]] = []

    def __call__(self, model: keras.Model, x: np.ndarray) -> np.ndarray:
        if not self.xla:
            return keras_predict(inference_model(self.cfg, model), x, self.batch_size)
        if not len(x):
            return np.empty((0, NUM_CLASSES), np.float32)
        import tensorflow as tf

        if self._twin is None:
            self._twin = build_twin(
                self.cfg.model, model.get_weights(), sequence_shape(self.cfg.data.layout), fused=self.fused
            )
            self._score = _score_in_one_graph(self._twin, self.batch_size, self.shards)
            # Each twin variable's source: the model's weight at its place in `weights` (the order
            # set_weights follows), or, for what holds no weight (a dropout's seed), the twin's own value.
            where = {id(v): i for i, v in enumerate(self._twin.weights)}
            self._sources = [
                ([where.get(id(v)) for v in variables], variables)
                for variables in (self._twin.trainable_variables, self._twin.non_trainable_variables)
            ]
        weights = [w.value for w in model.weights]
        trainable, others = (
            [v.value if i is None else weights[i] for i, v in zip(places, variables, strict=True)]
            for places, variables in self._sources
        )
        return np.asarray(self._score(trainable, others, tf.constant(x)))

    def score(self, model: keras.Model, split: Split) -> Scores:
        return scores_from_probabilities(self(model, split.x), split.y)


def scoring_pieces(n: int, batch: int, shards: int) -> list[tuple[int, int]]:
    """[start, stop) of each XLA call that scores n images: batches of `batch` (a short last one is its own
    shape: padding it cost up to a whole batch of work, pixels 2,000 scored for 1,024); where fewer whole
    batches than `shards`, each batch of at least `shards` x MIN_SHARD images split into `shards`, so each
    core has one."""
    pieces = [(i, min(i + batch, n)) for i in range(0, n, batch)]
    if shards == 1 or n // batch >= shards:
        return pieces
    split = []
    for start, stop in pieces:
        size = stop - start
        parts = shards if size >= shards * MIN_SHARD else 1
        cuts = [start + size * k // parts for k in range(parts)] + [stop]
        split += list(zip(cuts[:-1], cuts[1:], strict=True))
    return split


def _score_in_one_graph(twin: keras.Model, batch: int, shards: int) -> Any:
    """(trainable, non-trainable, x) -> probabilities: one plain graph (traced once per number of images) of
    one XLA call per piece (`scoring_pieces`). With `shards` > 1 the calls are independent and the graph runs
    them side by side on TensorFlow's inter-op threads, one per core (a call alone, its many small steps,
    keeps two cores only partly busy); otherwise each waits for the one before. Whole batches score as one
    call alone would, to the bit. Against the Python call per batch (each split in two) and the weights copied
    into the twin that it replaced, on an AVX-512 EPYC, paired slices of 4,096 rows: LSTM 1x128 1.10x, GRU
    2x128 1.06x, LSTM 2x128 not decided; pixels level (scripts/scoring_ab.py; docs/performance.md,
    "scoring in one graph")."""
    import tensorflow as tf

    forward = tf.function(
        lambda trainable, others, x: twin.stateless_call(trainable, others, x, training=False)[0],
        jit_compile=True,
        reduce_retracing=True,
    )

    @tf.function
    def score(trainable: Any, others: Any, x: Any) -> Any:
        outputs: list[Any] = []
        for start, stop in scoring_pieces(int(x.shape[0]), batch, shards):
            after = [] if shards > 1 or not outputs else [outputs[-1]]
            with tf.control_dependencies(after):
                outputs.append(forward(trainable, others, x[start:stop]))
        return tf.concat(outputs, 0)

    return score


def evaluate_run(
    run_dir: Path, checkpoint: str = "best", split: str = "test", explain: int = 0
) -> dict[str, Any]:
    """Score a run's checkpoint on its test or validation split; write eval.json, confusion_matrix.png and
    errors.png, and with `explain` > 0 explain.png: that many digits read step by step (streaming)."""
    run = TrainedRun(run_dir, checkpoint)
    cfg = run.cfg
    if split not in ("test", "val"):
        raise UsageError(f"unknown split {split!r}; use test or val")
    if split == "val" and cfg.data.validation == 0:
        raise UsageError(
            f"{run_dir}: this run held out no validation images (data.validation: 0); use --split test"
        )
    path = run.path  # a missing checkpoint fails here, before any data is loaded
    dataset = load_dataset(cfg.data, cfg.seed)
    streamer = run.streamer() if explain > 0 else None  # a model that cannot stream fails before scoring
    target = dataset.test if split == "test" else dataset.val
    assert target is not None
    # TensorFlow's own choice of device (a GPU if it sees one); the scoring path follows the run's config
    xla = plan_scoring(cfg, select_device(Device.auto))
    probs = Scorer(cfg, xla, scoring_shards(cfg, xla))(run.model, target.x)
    report = {
        "checkpoint": checkpoint,
        "checkpoint_path": str(path),
        "checkpoint_epoch": run.state.get("epoch"),
        "split": split,
        "data": dataset.description,
        **asdict(scores_from_probabilities(probs, target.y)),
    }
    images = to_images(target.x, cfg.data.layout, input_permutation(cfg.data))
    title = f"{split} split, checkpoint {checkpoint} (epoch {run.state.get('epoch')})"
    pictures = [
        plot_confusion(report["confusion_matrix"], report["per_class_accuracy"], title, run_dir / CONFUSION),
        plot_errors(images, probs, target.y, run_dir / ERRORS, split=split),
    ]
    if streamer is not None:
        steps = np.stack([streamer.stream(x) for x in target.x[:explain]])  # (N, 28, 10)
        unit = READ_PER_CALL[cfg.data.layout]
        pictures.append(plot_explain(images[:explain], steps, target.y[:explain], unit, run_dir / EXPLAIN))
    report["pictures"] = [str(p) for p in pictures]
    runs.write_metrics(run_dir, report, runs.EVAL)
    return report
