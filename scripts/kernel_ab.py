"""The fused LSTM's training step, this tree's kernel against another commit's, on one core.

    python scripts/kernel_ab.py --base ea6e226 [--case lstm2x128-rows] [--rounds 30] [--out PATH.json]
    python scripts/kernel_ab.py --profile [--case lstm2x128-rows] [--out PATH.json]
    python scripts/kernel_ab.py --profile --scoring --case lstm2x128-pixels   # the Scorer's call instead

What it times is one shard of `sharded_step.ShardedModel` (forward, loss and backward as one XLA computation,
batch 64 of 128, the size each core runs in `mnist-rnn train`), with one thread per op: the per-core step
that the bench's two-shard training rate is made of. The base commit's `mnist_rnn/fused_lstm.py` is read
from git and loaded beside this tree's; both models get the same weights and batch, and their losses and
gradients are compared bit for bit before any timing (what a change meant to be pure speed should pass;
whole runs can still part in the last bits, as docs/performance.md found for short last batches).
Then `--rounds` rounds, each timing a slice of `--calls` steps of the base (A), this tree (B) and the base
again (A'), in an order rotated each round; a round's ratio is A's time over B's (above 1: this tree is
faster), the A/A control is A over A', and both are summarised as the median with a bootstrap 90%
interval (mnist_rnn/measure.py).

`--profile` instead runs this tree's step under TensorFlow's profiler with XLA:CPU's per-thunk events
(scripts/profile_vs_torch.py reads them): the step's time per HLO operation, the dots apart from the rest,
and the dots' FLOP rate (the case's training FLOPs, scripts/bench.py's count, for 64 samples) against the
rate of one large matmul on the same single thread. With one shard on one thread, an operation's wall time
is its CPU time: no other shard shares the core. `--scoring` profiles the forward-only XLA call that
`evaluate.Scorer` makes for a shard of the same size (the bench's two-layer pixel eval slice is two such).
"""

from __future__ import annotations

import argparse
import collections
import functools
import inspect
import json
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench  # noqa: E402  (the cases and machine facts)

from mnist_rnn.revision import source_revision  # noqa: E402
from mnist_rnn.tf_import import import_tensorflow  # noqa: E402

BATCH = 64  # one shard of the bench's batch of 128 on 2 cores


def base_module(rev: str, path: str) -> types.ModuleType:
    """`path` (a module file of this repository) as of `rev`, loaded beside this tree's as a module."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True, capture_output=True, text=True
    ).stdout
    module = types.ModuleType(f"{Path(path).stem}_{rev}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)
    return module


def base_kernel(rev: str) -> types.ModuleType:
    """`mnist_rnn/fused_lstm.py` as of `rev`, as a module of its own (its layer class is not registered)."""
    import keras

    from mnist_rnn import fused_lstm

    module = base_module(rev, "mnist_rnn/fused_lstm.py")
    keras.saving.register_keras_serializable(package="mnist_rnn")(fused_lstm.FusedLSTM)  # ours again
    return module


def shard_step(
    case: bench.Case, sequence_fn: Any, shape: tuple[int, int], batch: tuple[Any, ...]
) -> tuple[Any, list, list]:
    """A compiled shard step of the case's model whose FusedLSTM layers run `sequence_fn` (traced on
    `batch`), with its trainable and seed-state values; weights from seed 0, the same for every call."""
    import keras

    from mnist_rnn import fused_lstm
    from mnist_rnn.execution import plan_execution
    from mnist_rnn.loop import compile_model
    from mnist_rnn.model import build_model

    cfg = bench.case_config(case)
    execution = plan_execution(cfg, "/CPU:0")
    if not execution.fused:
        raise SystemExit(f"{case.name} does not train with the fused LSTM: nothing to compare")
    keras.utils.set_random_seed(0)
    model = build_model(cfg.model, shape, fused=True, shards=2)
    compile_model(model, cfg.train, execution.xla)
    own = fused_lstm.lstm_sequence
    if "training" not in inspect.signature(sequence_fn).parameters:  # a commit before it took one
        sequence_fn = functools.partial(_without_training, sequence_fn)
    fused_lstm.lstm_sequence = sequence_fn  # FusedLSTM.call looks it up when the step is traced
    try:
        step = model._compiled_shard_step()
        trainable = [v.value for v in model.trainable_variables]
        others = [v.value for v in model.non_trainable_variables]
        step.get_concrete_function(trainable, others, *batch)  # traced now, with sequence_fn
    finally:
        fused_lstm.lstm_sequence = own
    return step, trainable, others


def _without_training(sequence_fn: Any, *args: Any, training: bool = True) -> Any:
    return sequence_fn(*args)


def _batch(case: bench.Case) -> tuple[Any, ...]:
    """The first BATCH training images as the case's sequences: (x, y, sample weights, the whole batch's
    size, which the shard's loss divides by)."""
    import numpy as np
    import tensorflow as tf

    from mnist_rnn.data import load_embedded
    from mnist_rnn.layouts import make_sequences

    arrays = load_embedded()
    x = make_sequences(arrays["train_images"][:BATCH], case.layout)
    y = arrays["train_labels"][:BATCH].astype(np.int32)
    return tf.constant(x), tf.constant(y), tf.ones((BATCH,)), tf.constant(2.0 * BATCH)


def scoring_call(case: bench.Case, shape: tuple[int, int], x: Any) -> Any:
    """The XLA call that `evaluate.Scorer` makes for one shard: the case's twin (Keras's layers, or the fused
    LSTM's forward loop where `execution.scoring_fused` picks it), forward only, on x."""
    import tensorflow as tf

    from mnist_rnn.execution import scoring_fused
    from mnist_rnn.model import build_model, build_twin

    cfg = bench.case_config(case)
    twin = build_twin(cfg.model, build_model(cfg.model, shape).get_weights(), shape, fused=scoring_fused(cfg))
    forward = tf.function(lambda x: twin(x, training=False), jit_compile=True)
    return lambda: (forward(x),)


def profile(
    case: bench.Case, shape: tuple[int, int], batch: tuple[Any, ...], steps: int, scoring: bool = False
) -> dict[str, Any]:
    """This tree's shard step (or with `scoring`, its scoring call) per HLO operation (ms per step), dots
    apart from the rest."""
    import shutil
    import tempfile

    import profile_vs_torch
    import tensorflow as tf

    from mnist_rnn import fused_lstm

    if scoring:
        call = scoring_call(case, shape, batch[0])
    else:
        step, trainable, others = shard_step(case, fused_lstm.lstm_sequence, shape, batch)
        call = functools.partial(step, trainable, others, *batch)
    for _ in range(3):
        call()
    trace_dir = Path(tempfile.mkdtemp(prefix="kernel-ab-xprof-"))
    try:
        tf.profiler.experimental.start(str(trace_dir))
        for _ in range(steps):
            out = call()
        out[0].numpy()
        tf.profiler.experimental.stop()
        ops = profile_vs_torch.xla_ops(trace_dir)
    finally:
        shutil.rmtree(trace_dir, ignore_errors=True)
    per_step = {name: ms / steps for name, ms in ops.items() if name not in profile_vs_torch.WAITING}
    dots = {name: ms for name, ms in per_step.items() if profile_vs_torch.MATMUL.search(name)}
    kinds: dict[str, float] = collections.defaultdict(float)
    for name, ms in per_step.items():  # `add_divide_fusion.12` -> `add_divide_fusion`
        kinds[re.sub(r"(\.\d+)+$", "", re.sub(r"_\d+(?=\.)", "", name))] += ms
    dot_ms = sum(dots.values())
    flops = bench.flops_per_sample(case)["forward" if scoring else "train"] * BATCH
    return {
        "op_ms_per_step": sum(per_step.values()),
        "dot_ms_per_step": dot_ms,
        "other_ms_per_step": sum(per_step.values()) - dot_ms,
        "dots": sum(not name.startswith("end: ") for name in dots),  # (an async op's end is its own event)
        "dot_gflops": flops / (dot_ms / 1e3) / 1e9,
        "one_thread_matmul_gflops": bench.matmul_gflops(),
        "kinds_ms_per_step": dict(sorted(kinds.items(), key=lambda kind: -kind[1])[:12]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", help="a commit whose fused_lstm.py is the baseline")
    parser.add_argument("--profile", action="store_true", help="this tree's step per operation, no timing")
    parser.add_argument("--scoring", action="store_true", help="with --profile: the scoring call, no step")
    parser.add_argument("--case", default="lstm2x128-rows")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=10, help="steps per timed slice")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not args.profile and not args.base:
        parser.error("--base COMMIT (or --profile)")
    if args.profile:  # XLA reads its flags once, when TensorFlow loads
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_enable_xprof_traceme=true"
    import_tensorflow()
    import numpy as np
    import tensorflow as tf

    from mnist_rnn import fused_lstm
    from mnist_rnn.measure import summarise
    from mnist_rnn.mnist import LAYOUT_SHAPES, Layout

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    case = next(c for c in bench.cases() if c.name == args.case)
    shape = LAYOUT_SHAPES[Layout(case.layout)]
    batch = _batch(case)
    if args.profile:
        found = {"machine": bench.machine_facts("/CPU:0"), "case": case.name, "head": source_revision(),
                 "batch": BATCH, "threads": 1, "scoring": args.scoring,
                 **profile(case, shape, batch, steps=args.calls * 2, scoring=args.scoring)}  # fmt: skip
        _report(found, args.out)
        return
    base = base_kernel(args.base)
    variants = {
        "A": shard_step(case, base.lstm_sequence, shape, batch),
        "B": shard_step(case, fused_lstm.lstm_sequence, shape, batch),
        "A2": shard_step(case, base.lstm_sequence, shape, batch),
    }
    outputs = {name: step(trainable, others, *batch) for name, (step, trainable, others) in variants.items()}
    identical = all(
        np.array_equal(a.numpy(), b.numpy())
        for a, b in zip(tf.nest.flatten(outputs["A"][:2]), tf.nest.flatten(outputs["B"][:2]), strict=True)
    )
    print(f"loss and gradients bit-identical to {args.base}: {identical}", flush=True)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % 3 :] + names[: r % 3]:
            step, trainable, others = variants[name]
            start = time.perf_counter()
            for _ in range(args.calls):
                out = step(trainable, others, *batch)
            out[0].numpy()
            seconds[name].append((time.perf_counter() - start) / args.calls)
    ratio = [a / b for a, b in zip(seconds["A"], seconds["B"], strict=True)]
    control = [a / b for a, b in zip(seconds["A"], seconds["A2"], strict=True)]
    report = {
        "machine": bench.machine_facts("/CPU:0"),
        "case": case.name,
        "base": args.base,
        "head": source_revision(),
        "batch": BATCH,
        "threads": 1,
        "rounds": args.rounds,
        "calls_per_slice": args.calls,
        "bit_identical": identical,
        "step_ms_min": {name: 1e3 * min(s) for name, s in seconds.items()},
        "speedup": summarise(ratio),  # A's time over B's: above 1 when this tree's kernel is faster
        "aa": summarise(control),
    }
    _report(report, args.out)


def _report(report: dict[str, Any], out: Path | None) -> None:
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1))
    if out:
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
