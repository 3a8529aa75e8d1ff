"""Where a training step's time goes: per-op totals from the TensorFlow profiler, and a timing breakdown.

    python scripts/profile_step.py                      # Keras's LSTM(128), rows, no XLA: per-op table
    python scripts/profile_step.py --kernel fused       # the fused LSTM without XLA: per-op table
    python scripts/profile_step.py --breakdown          # forward / +backward / +optimizer, both kernels

Per-op: one traced epoch of `train.fit_epoch` (batch 128, 32 steps per call, as `mnist-rnn train` runs
it) under `tf.profiler`; the op events of TensorFlow's executor threads are summed by op type. Op time
is summed over both cores, so it can exceed the wall time. Under XLA the step is one compiled cluster
and the profiler cannot split it, hence the breakdown: the same batches timed as inference only, as
forward + backward (a GradientTape, no update), and as the full compiled train step.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mnist_rnn.tf_import import import_tensorflow  # noqa: E402

BATCH = 128
DEVICE = "/CPU:0"


def _data(samples: int) -> tuple[np.ndarray, np.ndarray]:
    from mnist_rnn.data import load_embedded
    from mnist_rnn.layouts import make_sequences

    arrays = load_embedded()
    x = make_sequences(arrays["train_images"][:samples], "rows")
    return x, arrays["train_labels"][:samples].astype(np.int32)


def _model(kernel: str, units: tuple[int, ...], xla: bool):
    from mnist_rnn.config import LstmKernel, ModelConfig, TrainConfig
    from mnist_rnn.loop import compile_model
    from mnist_rnn.model import build_model

    model = build_model(
        ModelConfig(units=units, lstm_kernel=LstmKernel(kernel)), (28, 28), fused=kernel == "fused"
    )
    compile_model(model, TrainConfig(clipnorm=None), xla)
    return model


def op_table(trace_dir: Path) -> list[tuple[str, float, int]]:
    """(op type, total ms, count) from the host plane of the trace, largest first."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(next(trace_dir.rglob("*.xplane.pb")).read_bytes())
    plane = next(p for p in space.planes if p.name == "/host:CPU")
    stat_names = {k: v.name for k, v in plane.stat_metadata.items()}
    total: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for line in plane.lines:
        if not line.name.startswith("tf_Compute"):  # the executor's worker threads: one event per op
            continue
        for event in line.events:
            meta = plane.event_metadata[event.metadata_id]
            if meta.name in ("ExecutorState::Process", "ParallelFor"):  # containers, not ops
                continue
            op_type = meta.display_name or meta.name
            for stat in [*meta.stats, *event.stats]:
                if stat_names.get(stat.metadata_id) == "tf_op" and stat.str_value:
                    op_type = stat.str_value.split(":")[-1]
            total[op_type] += event.duration_ps / 1e9
            count[op_type] += 1
    return [(op, ms, count[op]) for op, ms in total.most_common()]


def profile(kernel: str, units: tuple[int, ...], xla: bool, batches: int, top: int = 15) -> None:
    import tensorflow as tf

    from mnist_rnn.loop import fit_epoch

    x, y = _data(BATCH * batches)
    model = _model(kernel, units, xla)
    fit_epoch(model, x, y, BATCH, DEVICE)  # compile outside the trace
    trace_dir = Path(tempfile.mkdtemp(prefix="mnist-rnn-profile-"))
    try:
        start = time.perf_counter()
        tf.profiler.experimental.start(str(trace_dir))
        fit_epoch(model, x, y, BATCH, DEVICE)
        tf.profiler.experimental.stop()
        wall = time.perf_counter() - start
        rows = op_table(trace_dir)
    finally:
        shutil.rmtree(trace_dir, ignore_errors=True)
    op_ms = sum(ms for _, ms, _ in rows)
    print(f"kernel {kernel}, units {list(units)}, XLA {'on' if xla else 'off'}: {batches} batches of {BATCH}")
    print(f"wall {wall * 1e3:.0f} ms (profiler on), op time {op_ms:.0f} ms over both cores")
    print("| op type | ms | % of op time | ops per batch | us per op |")
    print("|---|---|---|---|---|")
    for op, ms, n in rows[:top]:
        print(f"| {op} | {ms:.1f} | {100 * ms / op_ms:.1f} | {n / batches:.1f} | {1e3 * ms / n:.1f} |")
    per_batch = sum(n for *_, n in rows) / batches
    print(f"| (all {len(rows)} op types, {per_batch:.0f} ops per batch) | {op_ms:.0f} |")


def _kernel_runs(
    kernel: str, units: tuple[int, ...], x: np.ndarray, y: np.ndarray
) -> list[Callable[[], None]]:
    """Inference, forward + backward, and the whole train step of one kernel (XLA on), as callables."""
    import keras
    import tensorflow as tf

    from mnist_rnn.loop import fit_epoch

    model = _model(kernel, units, xla=True)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    xb = [tf.constant(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    yb = [tf.constant(y[i : i + BATCH]) for i in range(0, len(y), BATCH)]

    @tf.function(jit_compile=True)
    def infer(xs: tf.Tensor) -> tf.Tensor:
        return model(xs, training=False)

    @tf.function(jit_compile=True)
    def grads(xs: tf.Tensor, ys: tf.Tensor) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = loss_fn(ys, model(xs, training=True))
        return tape.gradient(loss, model.trainable_weights)

    def run_infer() -> None:
        outs = [infer(xs) for xs in xb]
        outs[-1].numpy()  # wait for the last batch

    def run_grads() -> None:
        outs = [grads(xs, ys) for xs, ys in zip(xb, yb, strict=True)]
        outs[-1][0].numpy()

    def run_step() -> None:
        fit_epoch(model, x, y, BATCH, DEVICE)

    return [run_infer, run_grads, run_step]


def breakdown(units: tuple[int, ...], batches: int, reps: int) -> None:
    """Interleaved (keras, fused, keras, ...) so that the machine's slow spells hit both alike."""
    x, y = _data(BATCH * batches)
    runs = {kernel: _kernel_runs(kernel, units, x, y) for kernel in ("keras", "fused")}
    for fns in runs.values():
        for fn in fns:
            fn()  # compile
    times: dict[str, list[list[float]]] = {kernel: [[], [], []] for kernel in runs}
    for _ in range(reps):
        for kernel, fns in runs.items():
            for i, fn in enumerate(fns):
                time.sleep(0.2)
                start = time.perf_counter()
                fn()
                times[kernel][i].append(time.perf_counter() - start)
    print(f"samples/s, median of {reps} interleaved runs of {batches} batches of {BATCH}")
    print("| kernel (XLA on) | inference | forward + backward | train step (+ Adam, metrics) |")
    print("|---|---|---|---|")
    for kernel, per_fn in times.items():
        rates = [len(x) / statistics.median(t) for t in per_fn]
        print(f"| {kernel} | {rates[0]:,.0f} | {rates[1]:,.0f} | {rates[2]:,.0f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kernel", choices=["keras", "fused"], default="keras")
    parser.add_argument("--xla", action="store_true", help="XLA-compile the step (per-op: one cluster)")
    parser.add_argument("--units", type=int, nargs="+", default=[128])
    parser.add_argument("--batches", type=int, default=32)
    parser.add_argument("--top", type=int, default=15, help="per-op: how many op types to list")
    parser.add_argument("--breakdown", action="store_true", help="time inference/backward/step instead")
    parser.add_argument("--reps", type=int, default=5, help="--breakdown: repetitions (median)")
    args = parser.parse_args(argv)
    import_tensorflow()
    if args.breakdown:
        breakdown(tuple(args.units), args.batches, args.reps)
    else:
        profile(args.kernel, tuple(args.units), args.xla, args.batches, args.top)


if __name__ == "__main__":
    main()
