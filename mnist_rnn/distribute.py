"""More than one device, and GPUs: the `tf.distribute` strategy a run trains under, mixed precision, and
the GPU facts (model, driver, cuDNN) a run records.

`train.strategy: mirrored` is TensorFlow's own `MirroredStrategy` over `train.devices` (default: every GPU;
on a machine without one, every logical CPU, which is how the tests run it on two CPU devices). The model
is built, compiled and restored inside the strategy's scope, `model.fit` splits each global batch across
the replicas and all-reduces the gradients. Two known traps are avoided on purpose: XLA under a strategy
(keras#18627: the config refuses `jit_compile: on`, `auto` turns it off) and, found here with TF 2.21 /
Keras 3.15, `steps_per_execution > 1` with a recurrent layer under MirroredStrategy ("You must feed a
value for placeholder tensor ..."), so a strategy runs one batch per call.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from mnist_rnn.config import ModelConfig, Strategy, TrainConfig
from mnist_rnn.errors import ConfigError, DeviceError
from mnist_rnn.execution import cudnn_blockers

if TYPE_CHECKING:
    import tensorflow as tf


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

    return tf.distribute.MirroredStrategy(strategy_devices(cfg))


def distributed(strategy: tf.distribute.Strategy | None) -> AbstractContextManager[Any]:
    """The strategy's scope (variables mirrored across its devices), or nothing without one."""
    return strategy.scope() if strategy is not None else nullcontext()


def placement(device: str) -> AbstractContextManager[Any]:
    """`tf.device(device)` on one device; under a strategy its own placement rules and this is a no-op."""
    import tensorflow as tf

    return nullcontext() if tf.distribute.has_strategy() else tf.device(device)


# ------------------------------------------------------------------------------------- precision


def check_precision(cfg: TrainConfig, device: str) -> None:
    """Mixed precision needs a GPU: on a CPU float16 compute is emulated, slower and less accurate."""
    if cfg.mixed_precision and not device.startswith("/GPU"):
        raise ConfigError(
            f"train.mixed_precision: needs a GPU, but this run trains on {device}; "
            "set train.mixed_precision: false"
        )


@contextmanager
def precision(cfg: TrainConfig) -> Iterator[None]:
    """Keras's global dtype policy for the run: `mixed_float16` (float16 compute, float32 variables; Keras
    wraps the optimizer in a LossScaleOptimizer at compile) or float32. Restored afterwards: it is global."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16" if cfg.mixed_precision else "float32")
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
