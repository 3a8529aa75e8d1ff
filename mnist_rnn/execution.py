"""How a run executes, decided in one place: the device, determinism, the fused LSTM kernel and XLA.

Every rule that picks a path lives here, with the measurements behind it (docs/performance.md), so
`train`, `scripts/bench.py` and the config's own check (`fused_kernel_violation`) agree on what runs.
TensorFlow is imported inside the functions that need it: the config loader imports this module.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mnist_rnn import __version__
from mnist_rnn.config import Cell, Config, Device, Jit, Key, LstmKernel, ModelConfig, Strategy
from mnist_rnn.cpu import cpu_description
from mnist_rnn.data import training_images
from mnist_rnn.errors import ConfigError, DeviceError
from mnist_rnn.mnist import LAYOUT_SHAPES
from mnist_rnn.model import uses_fused_lstm
from mnist_rnn.revision import source_revision

if TYPE_CHECKING:
    import keras
    from rich.console import Console

FUSED_MAX_STEPS = 128  # the fused LSTM unrolls up to this many steps; beyond, a loop over unrolled chunks
# `auto` picks the fused LSTM for runs of at least this many training images x epochs. Measured on 2 cores
# (docs/performance.md): its XLA compile costs 4-11 s more than Keras's graph per batch shape (an epoch's
# partial last batch is a second shape), and it saves 40-100 us per image, so it pays from about 300,000
# (the default config: 55,000 x 12 = 660,000; the smoke config: 12,000).
FUSED_MIN_SAMPLES = 300_000
# XLA on long sequences (784-step pixels) pays for one layer only: 1.8x the plain graph on an AVX-512 EPYC,
# 0.99x [0.87-1.06] on an AVX2 one, but 0.24x [0.17-0.38] for two layers there (CPU time 151 vs 34 ms per
# sample; docs/bench/2026-12-03-epyc-avx2-quick-slices.json), which made two-layer pixel epochs take an hour.
XLA_MIN_STEPS = 100
# On short sequences XLA pays for the GRU in a long run: Keras's GRU under XLA trained at 1.39x
# [1.25-1.54] the plain graph (2x128 rows, AVX2 EPYC, paired slices; same JSON).
XLA_CELLS_SHORT = frozenset({Cell.gru})
# An XLA step of a small RNN runs on one core; the batch split into one shard per core, run side by side
# (sharded_step.py), pays on 2 cores. Paired slices (scripts/shards_ab.py), sharded over one call: on an
# AVX-512 EPYC, LSTM 1x128 rows 1.33x [1.16-1.46], pixels not decided (20 rounds each,
# docs/bench/2026-12-04-epyc-avx512-shards-ab.json); on that EPYC capped to AVX2 (cpu.ISA_CAP_ENV), LSTM
# 1x128 rows 1.20x [1.15-1.22] (docs/bench/2026-12-05-epyc-avx512-capped-avx2-shards-ab-one-layer.json);
# on an AVX2 EPYC before the fused kernel's rewrite, stacked models 1.54x [1.44-1.75] (LSTM 2x128) and
# 1.34x [1.00-1.84] (GRU 2x128), one layer 0.93x [0.88-1.11] (docs/bench/2026-12-03-epyc-avx2-shards-ab.json).
# So `auto` shards every XLA run on short sequences. On long ones the fused LSTM (its loop over chunks)
# trains in shards: on an AVX-512 EPYC, pixels, its step on one core 1.13x [1.12-1.13] Keras's LSTM under
# XLA for one layer and 4.2x for two (scripts/lstm_loop_probe.py --train); in shards on 2 cores the
# bench's training over PyTorch 1.74x [1.67-1.89] and 1.68x [1.59-2.09]
# (docs/bench/2026-12-05-epyc-avx512-quick-pixels-fused.json). Shards below MIN_SHARD: not measured.
# Scoring in shards (evaluate.Scorer: whole eval batches side by side where a call has one per core, else
# each batch split, `evaluate.scoring_pieces`), the same probabilities to the bit, over one call at a
# time: on an AVX-512 EPYC LSTM 2x128 rows 1.14x [1.11-1.16], LSTM 1x128 pixels 1.14x [1.12-1.20]
# (docs/bench/2026-12-04-epyc-avx512-scoring-shards-ab.json; whole batches over split ones,
# docs/bench/2026-12-05-epyc-avx512-scoring-graph*.json: up to 1.10x); capped to AVX2, 1.08x-1.15x on
# every case (docs/bench/2026-12-05-epyc-avx512-capped-avx2-scoring-shards-ab.json). So on every CPU.
MIN_SHARD = 32
# With the fused LSTM's step in one shard per core, TensorFlow's intra-op pool at one thread (each shard's
# XLA program then stays on the core that launched it): on an AVX-512 EPYC, ours over PyTorch, pooled
# paired slices of three processes per setting, LSTM 1x128 rows 0.87 [0.85-0.97] against 0.83 [0.78-0.84]
# with TensorFlow's default, 2x128 0.93 [0.89-0.98] against 0.79 [0.69-0.86]; Keras's GRU 2x128 in shards
# lost with it, 0.87 [0.80-0.91] against 1.28 [1.21-1.36] (scripts/threads_probe.py,
# docs/bench/2026-12-04-epyc-avx512-threads.json); capped to AVX2 (cpu.ISA_CAP_ENV), LSTM 1x128 rows 1.19
# [1.17-1.31] against 1.05 [1.02-1.06], 2x128 1.09 [1.08-1.14] against 1.09 [1.08-1.11], GRU 0.72 against
# 1.32 (docs/bench/2026-12-05-epyc-avx512-capped-avx2-threads.json). So on every CPU. Only for the
# unrolled kernel (up to FUSED_MAX_STEPS): with one thread per op, the shards of its loop over chunks ran
# one after the other (pixels: CPU 1.01 cores, 250 images/s against 1.98 cores, 455 images/s with the
# default; XLA:CPU runs a loop's body on the intra-op pool, whose one thread both shards then wait for).


# ------------------------------------------------------------------------------------------ device


def select_device(device: Device) -> str:
    """Return the TensorFlow device string for `train.device`; must run before any TensorFlow op."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if device is Device.gpu and not gpus:
        raise DeviceError(
            "train.device is gpu but TensorFlow sees no GPU on this machine; "
            "set train.device: auto (or cpu), or install a CUDA-enabled TensorFlow "
            "(pip install 'tensorflow[and-cuda]')"
        )
    if device is Device.cpu and gpus:
        tf.config.set_visible_devices([], "GPU")  # hide them so no op lands there
        return "/CPU:0"
    return "/GPU:0" if gpus and device is not Device.cpu else "/CPU:0"


def set_cpu_threads(threads: int | None, required: bool = True) -> int:
    """Apply `train.cpu_threads` (or the plan's choice, `planned_cpu_threads`) before TensorFlow starts its
    runtime; return the count in effect (0: TensorFlow's default, one per logical CPU). Results depend on it
    in the last digits (a matmul split over more threads sums in another order), so a run records it. Once
    the runtime runs (a caller that trains in its own process), a count the config asked for is refused; the
    plan's own preference (`required=False`) gives way to the count in effect."""
    import tensorflow as tf

    current = tf.config.threading.get_intra_op_parallelism_threads()
    if threads is None or threads == current:
        return current
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # "cannot be modified after initialization"
        if not required:
            return current
        raise ConfigError(
            f"train.cpu_threads={threads} cannot take effect: TensorFlow already runs in this process "
            f"with {current or 'its default number of'} threads; train in a new process (as the CLI does)"
        ) from None
    return threads


def describe_device(device: str) -> str:
    import tensorflow as tf

    if device.startswith("/GPU"):
        gpu = tf.config.list_physical_devices("GPU")[0]
        details = tf.config.experimental.get_device_details(gpu)
        return f"{device} ({details.get('device_name', gpu.name)})"
    return f"{device} ({platform.processor() or platform.machine()}, TensorFlow CPU)"


def environment_facts(device: str) -> dict[str, str]:
    """What command.txt records beside the command: versions and the device."""
    import keras
    import numpy as np
    import tensorflow as tf

    return {
        "mnist-rnn": __version__,
        "source": source_revision(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": describe_device(device),
        "cpu": cpu_description(),
        "cpu threads per op": str(tf.config.threading.get_intra_op_parallelism_threads() or "default"),
        "xla flags": os.environ.get("XLA_FLAGS") or "none",
    }


def seed_everything(
    seed: int, deterministic: bool, jit_compile: bool = False, device: str = "/CPU:0"
) -> None:
    """Seed Python, NumPy and TensorFlow once, at the start of a command.

    TensorFlow's op-determinism switch also makes Keras turn XLA off, so it is used only where XLA is not:
    XLA-compiled steps on a CPU are deterministic as they are (no atomics; the input order is fixed), which
    the determinism and resume tests check on this very path.
    """
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # the public API has no "disable"

    keras.utils.set_random_seed(seed)
    # On an Ampere or newer NVIDIA GPU, TensorFlow runs float32 matmuls and convolutions in TF32 (a 10-bit
    # mantissa) by default: the same seed would then give numbers that differ from a CPU's and from the
    # float32 the config asks for far beyond rounding. A deterministic run computes in full float32.
    tf.config.experimental.enable_tensor_float_32_execution(not deterministic)
    # The switch is process-wide and sticky: set it both ways, so an earlier run in the same process
    # (tests, notebooks) cannot silently turn XLA off for this one.
    if deterministic and not (jit_compile and device.startswith("/CPU")):
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


# ------------------------------------------------------------------------------- kernels and XLA


@dataclass(frozen=True)
class Execution:
    """How training runs the model: chosen once per run from the config and the device."""

    fused: bool  # FusedLSTM instead of keras.layers.LSTM
    xla: bool  # XLA-compile the train/predict steps
    replicas: int = 1  # > 1 under train.strategy: mirrored
    shards: int = 1  # > 1: each batch as that many concurrent XLA computations (sharded_step.py)

    def describe(self) -> str:
        layers = "fused LSTM kernel" if self.fused else "Keras recurrent layers"
        spread = f", {self.replicas} replicas (mirrored)" if self.replicas > 1 else ""
        split = f", batch in {self.shards} concurrent shards" if self.shards > 1 else ""
        return f"{layers}, XLA {'on' if self.xla else 'off'}{spread}{split}"


def plan_execution(cfg: Config, device: str) -> Execution:
    """The fast path, by measurement (docs/performance.md). On a CPU: the fused LSTM under XLA for
    stateless LSTMs, in runs long enough to repay XLA's compile; XLA alone for other one-layer models on
    long sequences and for GRUs in long runs; plain Keras graphs otherwise. On a GPU: Keras's
    LSTM (cuDNN). Stateful runs keep to plain graphs: resets and checkpoints act between single batches.
    `lstm_kernel`/`jit_compile` on/off win."""
    kernel, jit = cfg.model.lstm_kernel, cfg.train.jit_compile
    if cfg.train.strategy is not Strategy.none:  # Keras layers, no XLA (keras#18627): see distribute.py
        return Execution(fused=False, xla=False)
    long_run = training_images(cfg.data) * cfg.train.epochs >= FUSED_MIN_SAMPLES
    fused = kernel is LstmKernel.fused or (
        kernel is LstmKernel.auto
        and not fused_lstm_blockers(cfg)
        and jit is not Jit.off
        and device.startswith("/CPU")
        and long_run
    )
    if cfg.train.stateful:
        xla = False
    else:
        xla = jit is Jit.on or (jit is Jit.auto and (fused or _xla_pays(cfg, device, long_run)))
    shards = _batch_shards(cfg, device, xla, fused)
    return Execution(fused=fused, xla=xla or shards > 1, shards=shards)


def _batch_shards(cfg: Config, device: str, xla: bool, fused: bool) -> int:
    """`train.batch_shards`, or by default one shard per CPU core (`cpu_threads` if set) on an XLA run on a
    CPU, each of at least MIN_SHARD samples: every model on short sequences, the fused LSTM on long ones
    (see MIN_SHARD). The config's rules refuse shards where they cannot run."""
    if cfg.train.batch_shards is not None:
        return cfg.train.batch_shards
    if not (xla and device.startswith("/CPU")):  # (a strategy returned from plan_execution earlier)
        return 1
    if not (fused or LAYOUT_SHAPES[cfg.data.layout][0] < XLA_MIN_STEPS):
        return 1
    cores = cfg.train.cpu_threads or len(os.sched_getaffinity(0))
    return max(1, min(cores, cfg.train.batch_size // MIN_SHARD))


def planned_cpu_threads(cfg: Config, execution: Execution) -> int | None:
    """Threads per CPU op for a training run: `train.cpu_threads` when set; else 1 where the fused LSTM
    trains unrolled in one shard per core (measured: the comment above `select_device`); else None,
    TensorFlow's default (one per logical CPU)."""
    if cfg.train.cpu_threads is not None:
        return cfg.train.cpu_threads
    cores = len(os.sched_getaffinity(0))
    unrolled = LAYOUT_SHAPES[cfg.data.layout][0] <= FUSED_MAX_STEPS
    if execution.fused and unrolled and execution.shards >= cores > 1:
        return 1
    return None


def _xla_pays(cfg: Config, device: str, long_run: bool) -> bool:
    """XLA for Keras's own layers, by measurement (see XLA_MIN_STEPS and XLA_CELLS_SHORT)."""
    if LAYOUT_SHAPES[cfg.data.layout][0] >= XLA_MIN_STEPS:
        return len(cfg.model.units) == 1
    return long_run and device.startswith("/CPU") and cfg.model.cell in XLA_CELLS_SHORT


def plan_scoring(cfg: Config, device: str) -> bool:
    """Whether validation, the final test and `eval` score through one XLA-compiled stateless twin
    (`evaluate.Scorer`): on a CPU, without a strategy. Measured on an AMD EPYC (AVX2), batch 1000: XLA
    inference is 1.3-2x Keras's graphs on every row model (GRU 2x128: 13,400 vs 9,700 images/s), and its
    compile costs 0.2-0.3 s more than a graph's trace, once per run. It runs with op determinism on (no
    Keras fit step is involved, so Keras's own refusal of XLA under determinism does not apply)."""
    return device.startswith("/CPU") and cfg.train.strategy is Strategy.none


def scoring_shards(cfg: Config, xla: bool) -> int:
    """How many XLA calls the Scorer runs side by side (see MIN_SHARD): one per core
    (`cpu_threads` if set), whole batches, or each batch split where a call has fewer whole batches than
    cores (`evaluate.scoring_pieces`), each of at least MIN_SHARD images; 1 off the XLA scoring path (`xla`:
    what `plan_scoring` decided)."""
    if not xla:
        return 1
    cores = cfg.train.cpu_threads or len(os.sched_getaffinity(0))
    return max(1, min(cores, cfg.train.eval_batch_size // MIN_SHARD))


def scoring_fused(cfg: Config) -> bool:
    """Whether the Scorer's twin runs the fused LSTM (`fused_lstm._scan_sequence`, its forward loop) instead
    of Keras's LSTM under XLA: for unidirectional LSTMs on sequences too long to unroll (pixels), where
    Keras's layer spends most of each step outside its matmul (docs/performance.md, "Scoring long
    sequences").
    Rows keep Keras's layers: there the two measured level."""
    steps = LAYOUT_SHAPES[cfg.data.layout][0]
    return cfg.model.cell is Cell.lstm and not cfg.model.bidirectional and steps > FUSED_MAX_STEPS


def running_execution(model: keras.Model) -> Execution:
    """The path a built or restored model runs: a resumed run goes on with what its checkpoint holds."""
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync if tf.distribute.has_strategy() else 1
    shards = int(getattr(model, "shards", 1))  # a ShardedModel compiles its shards, not the whole step
    xla = bool(getattr(model, "jit_compile", False)) or shards > 1
    return Execution(fused=uses_fused_lstm(model), xla=xla, replicas=replicas, shards=shards)


def fused_lstm_blockers(cfg: Config) -> list[str]:
    """Why the fused LSTM (stateless, unidirectional) cannot run `cfg`; empty if it can."""
    reasons = []
    if cfg.model.cell is not Cell.lstm:
        reasons.append(f"model.cell is {cfg.model.cell}")
    if cfg.model.bidirectional:
        reasons.append("model.bidirectional is true")
    if cfg.model.recurrent_dropout > 0:
        reasons.append("model.recurrent_dropout is not 0")
    if cfg.train.stateful:
        reasons.append("train.stateful is true")
    return reasons


def fused_kernel_violation(cfg: Config) -> tuple[Key, str] | None:
    """The config rule of this module: `model.lstm_kernel: fused` on a model the kernel cannot run."""
    if cfg.model.lstm_kernel is LstmKernel.fused and (blockers := fused_lstm_blockers(cfg)):
        why = "; ".join(blockers)
        return ("model", "lstm_kernel"), f"fused cannot run this model ({why}); use auto or keras"
    return None


def cudnn_blockers(cfg: ModelConfig) -> list[str]:
    """The config choices that stop Keras from using the cuDNN kernel on a GPU."""
    reasons = []
    if cfg.cell in (Cell.simple_rnn, Cell.janet):
        reasons.append(f"model.cell: {cfg.cell} has no cuDNN kernel")
    if cfg.recurrent_dropout > 0:
        reasons.append(f"model.recurrent_dropout={cfg.recurrent_dropout} (cuDNN needs 0)")
    return reasons


def announce_device(console: Console, device: str, model_cfg: ModelConfig) -> None:
    """Print the device and, on a GPU, each config choice that rules cuDNN out."""
    console.print(f"device: {describe_device(device)}", highlight=False)
    if device.startswith("/GPU"):
        blockers = cudnn_blockers(model_cfg)
        for reason in blockers:
            console.print(f"note: {reason}: Keras will not use the cuDNN kernel", highlight=False)
        if not blockers:
            console.print(f"cuDNN: Keras runs the {model_cfg.cell.upper()} layers on cuDNN", highlight=False)
