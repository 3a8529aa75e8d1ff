"""More than one device, and GPUs: the `tf.distribute` strategy a run trains under, mixed precision, and
the GPU facts (model, driver, cuDNN) a run records.

`train.strategy: multi_worker` is `MultiWorkerMirroredStrategy`, the cluster read from `TF_CONFIG`. Keras 3's
`fit` does not run under it (keras#20585), so each batch goes through `distributed_fit_epoch`'s own step:
`strategy.run` on every replica, the loss summed and divided by the global batch's size, the gradients
summed across workers by the optimizer (then clipped: `layers.ReplicaSafeAdam`), the figures reduced with
`strategy.reduce`. Workers agree after every batch whether any of them was asked to stop, so all stop at
the same batch. Collectives time out after `COLLECTIVE_TIMEOUT_S` and TensorFlow's peer health check
aborts them when a worker dies, so the others fail with a message instead of waiting forever.

`train.strategy: mirrored` is TensorFlow's own `MirroredStrategy` over `train.devices` (default: every GPU;
on a machine without one, every logical CPU, which is how the tests run it on two CPU devices). The model
is built, compiled and restored inside the strategy's scope, `model.fit` splits each global batch across
the replicas and all-reduces the gradients. Two known traps are avoided on purpose: XLA under a strategy
(keras#18627: the config refuses `jit_compile: on`, `auto` turns it off) and, found here with TF 2.21 /
Keras 3.15, `steps_per_execution > 1` with a recurrent layer under MirroredStrategy ("You must feed a
value for placeholder tensor ..."), so a strategy runs one batch per call.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from mnist_rnn.config import ModelConfig, Strategy, TrainConfig
from mnist_rnn.errors import ConfigError, DeviceError
from mnist_rnn.execution import cudnn_blockers

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

COLLECTIVE_TIMEOUT_S = 60  # a collective that waits longer than this fails (a worker is gone or hung)


def _short(name: str) -> str:
    """'/job:localhost/replica:0/task:0/device:GPU:1' or '/gpu:1' -> 'GPU:1'."""
    return name.rsplit("device:", 1)[-1].lstrip("/").upper()


def strategy_devices(cfg: TrainConfig) -> list[str]:
    """The devices a mirrored run replicates over; a named device that does not exist is a DeviceError."""
    import tensorflow as tf

    logical = [d.name for d in tf.config.list_logical_devices()]
    if cfg.devices is None:
        gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
        return gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    known = {_short(name): name for name in logical}
    missing = [d for d in cfg.devices if _short(d) not in known]
    if missing:
        raise DeviceError(
            f"train.devices: {', '.join(missing)} not found; this machine has "
            f"{', '.join(sorted(known)) or 'no devices'} (leave devices out to use every GPU)"
        )
    return [known[_short(d)] for d in cfg.devices]


def make_strategy(cfg: TrainConfig) -> tf.distribute.Strategy | None:
    """The strategy `cfg` asks for, or None to train on the one selected device."""
    if cfg.strategy is Strategy.none:
        return None
    import tensorflow as tf

    if cfg.strategy is Strategy.mirrored:
        return tf.distribute.MirroredStrategy(strategy_devices(cfg))
    cluster_task()  # a missing or broken TF_CONFIG is a one-line error, not TensorFlow's
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_S)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def cluster_task() -> tuple[str, int, int]:
    """(task type, index, number of workers) from TF_CONFIG; a ConfigError naming the fix if unusable."""
    raw = os.environ.get("TF_CONFIG")
    try:
        config = json.loads(raw or "")
        task, cluster = config["task"], config["cluster"]
        workers = len(cluster.get("chief", [])) + len(cluster["worker"])
        return str(task["type"]), int(task["index"]), workers
    except (ValueError, KeyError, TypeError):
        problem = "is not set" if raw is None else "is not valid JSON with cluster.worker and task"
        raise ConfigError(
            f"train.strategy: multi_worker reads the cluster from TF_CONFIG, which {problem}; e.g. "
            '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}'
        ) from None


def is_chief(cfg: TrainConfig) -> bool:
    """True for the one process that writes the run directory: always, except the non-chief workers of a
    multi_worker run (the chief is task `chief`, or worker 0 when the cluster names none)."""
    if cfg.strategy is not Strategy.multi_worker:
        return True
    kind, index, _ = cluster_task()
    has_chief = "chief" in json.loads(os.environ["TF_CONFIG"])["cluster"]
    return kind == "chief" or (kind == "worker" and index == 0 and not has_chief)


def uses_custom_step() -> bool:
    """True under MultiWorkerMirroredStrategy, where Keras's fit does not run (keras#20585)."""
    import tensorflow as tf

    return isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy)


def distributed(strategy: tf.distribute.Strategy | None) -> AbstractContextManager[Any]:
    """The strategy's scope (variables mirrored across its devices), or nothing without one."""
    return strategy.scope() if strategy is not None else nullcontext()


def placement(device: str) -> AbstractContextManager[Any]:
    """`tf.device(device)` on one device; under a strategy its own placement rules and this is a no-op."""
    import tensorflow as tf

    return nullcontext() if tf.distribute.has_strategy() else tf.device(device)


# ------------------------------------------------------------------------------ the custom step


def distributed_fit_epoch(
    model: keras.Model, batches: tf.data.Dataset, callbacks: Sequence[keras.callbacks.Callback]
) -> dict[str, Any]:
    """One epoch of `batches` (global batches) under MultiWorkerMirroredStrategy, calling `callbacks` as
    `fit` would after each batch (running loss and accuracy in the logs). Before each batch, and once at
    the end, the workers agree whether any of them was asked to stop (`model.stop_training`, set by a
    callback): then all stop at the same batch. Returns fit's history shape, with `peer_stop` when another
    worker asked and this one stopped with it."""
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    step, agree = _compiled(model, strategy)
    for callback in callbacks:  # on_epoch_begin is not called: it restores Keras's compiled metrics, which
        callback.set_model(model)  # this loop does not use (an epoch resumed part-way reports its own rest)
    model.stop_training = False
    loss_sum = correct = seen = 0.0
    logs = {"loss": float("nan"), "accuracy": float("nan")}
    for i, batch in enumerate(strategy.experimental_distribute_dataset(batches.with_options(options))):
        if float(agree(float(model.stop_training))) > 0:
            break
        batch_loss, batch_correct, n = (float(v) for v in step(batch))
        loss_sum, correct, seen = loss_sum + batch_loss, correct + batch_correct, seen + n
        logs = {"loss": loss_sum / seen, "accuracy": correct / seen}
        for callback in callbacks:
            callback.on_train_batch_end(i, logs)
    else:  # every batch ran: a stop asked for during the last one still has to reach the others
        agree_at_end = float(agree(float(model.stop_training))) > 0
        model.stop_training = model.stop_training or agree_at_end
        return {"loss": [logs["loss"]], "accuracy": [logs["accuracy"]], "peer_stop": agree_at_end}
    peer_stop = not model.stop_training
    model.stop_training = True
    return {"loss": [logs["loss"]], "accuracy": [logs["accuracy"]], "peer_stop": peer_stop}


def _compiled(model: keras.Model, strategy: tf.distribute.Strategy) -> tuple[Any, Any]:
    """The compiled train step and stop agreement, kept on the model so every epoch reuses the trace.

    step(batch): per replica, the loss summed over its samples divided by the global batch's size, so the
    gradients summed across replicas (by the optimizer) are those of the global batch's mean loss; returns
    the global batch's summed loss, correct predictions and size. agree(flag): the sum of all workers'
    flags."""
    cached = getattr(model, "_mnist_rnn_distributed", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    import keras
    import tensorflow as tf

    def replica_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        local_n = tf.cast(tf.shape(y)[0], tf.float32)
        n = tf.distribute.get_replica_context().all_reduce("SUM", local_n)
        with tf.GradientTape() as tape:
            probabilities = model(x, training=True)
            per_sample = keras.losses.sparse_categorical_crossentropy(y, probabilities)
            loss = tf.reduce_sum(per_sample) / n
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        predicted = tf.argmax(probabilities, -1, output_type=tf.int32)
        hits = tf.cast(tf.equal(predicted, tf.cast(y, tf.int32)), tf.float32)
        return tf.reduce_sum(per_sample), tf.reduce_sum(hits), local_n

    @tf.function
    def step(batch: tuple[tf.Tensor, ...]) -> list[tf.Tensor]:
        out = strategy.run(replica_step, args=(batch[0], batch[1]))
        return [strategy.reduce("SUM", value, axis=None) for value in out]

    @tf.function
    def agree(flag: float) -> tf.Tensor:
        local = strategy.run(lambda: tf.constant(flag, tf.float32))
        return strategy.reduce("SUM", local, axis=None)

    model._mnist_rnn_distributed = (step, agree)  # type: ignore[attr-defined]
    return step, agree


# ------------------------------------------------------------------------------------- precision


def check_precision(cfg: TrainConfig, device: str) -> None:
    """Mixed precision needs a GPU: on a CPU float16 compute is emulated, slower and less accurate."""
    if cfg.mixed_precision and not device.startswith("/GPU"):
        raise ConfigError(
            f"train.mixed_precision: needs a GPU, but this run trains on {device}; "
            "set train.mixed_precision: false"
        )


@contextmanager
def precision(mixed: bool) -> Iterator[None]:
    """Keras's global dtype policy for the run: `mixed_float16` (float16 compute, float32 variables; Keras
    wraps the optimizer in a LossScaleOptimizer at compile) or float32. Restored afterwards: it is global."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ------------------------------------------------------------------------------------------- GPUs


def gpu_description(device: str) -> str | None:
    """'NVIDIA H100 80GB HBM3 (compute 9.0), driver 550.54.15' for a GPU device; None on a CPU."""
    if not device.startswith("/GPU"):
        return None
    import tensorflow as tf

    index = int(device.rsplit(":", 1)[-1])
    gpu = tf.config.list_physical_devices("GPU")[index]
    details = tf.config.experimental.get_device_details(gpu)
    name = details.get("device_name", gpu.name)
    capability = details.get("compute_capability")
    text = f"{name} (compute {capability[0]}.{capability[1]})" if capability else name
    driver = _nvidia_driver()
    return f"{text}, driver {driver}" if driver else text


def _nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out.strip() else None


def cudnn_report(cfg: ModelConfig, device: str) -> dict[str, Any] | None:
    """For metrics.json on a GPU: whether Keras's cuDNN kernels run this model, and if not, why."""
    if not device.startswith("/GPU"):
        return None
    blockers = cudnn_blockers(cfg)
    return {"used": not blockers, "blockers": blockers}
