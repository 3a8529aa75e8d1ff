"""Where a training step's time goes, per op, in mnist-rnn's XLA step and in PyTorch's, side by side.

    python scripts/profile_vs_torch.py [--cases lstm1x128-rows lstm2x128-rows] [--batches 64]
        [--out docs/bench/NAME.json]

For each case of scripts/bench.py (same models, same Adam step, batch 128, same images), both variants
train `--batches` batches once to warm up and once under their own profiler:

- mnist-rnn: TensorFlow's profiler with XLA:CPU's per-thunk trace events (`--xla_cpu_enable_xprof_traceme`,
  set here before TensorFlow loads), so the one compiled step splits into its HLO operations. Each event's
  self time (its duration less the events nested in it) is summed by operation, named as XLA names it
  (`MatMul_27.10`: the dot of TensorFlow's op MatMul_27; `wrapped_tanh`, `concat`, `stack`: elementwise
  and data movement). Waiting for the other core's shard (`SlinkyThreadPool::Await`) is counted apart.
- PyTorch: `torch.profiler`, self CPU time per aten op.

Both are grouped into matmuls (dot, mm, addmm, bmm, matmul, linear, and oneDNN's RNN layer when PyTorch
uses it, which holds its gates too) and everything else. Per batch: op time over both cores and the wall
time, and the matmuls' FLOP rate (the case's FLOPs per training sample, scripts/bench.py's count, over the
matmul time) against the machine's single-precision matmul rate measured in the same process. Profilers
slow both sides, so compare shares and rates, not the wall times with the bench's.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the scripts folder is not a package; bench keeps triton out before torch loads)

MATMUL = re.compile(r"matmul|dot|einsum|^aten::(mm|addmm|bmm|linear)$|mkldnn_rnn", re.IGNORECASE)
WAITING = ("SlinkyThreadPool::Await",)
THUNKS = "ThunkExecutor::Execute"  # XLA:CPU runs a compiled program's operations inside this event


def xla_ops(trace_dir: Path) -> collections.Counter[str]:
    """Self ms per XLA operation (an event inside `ThunkExecutor::Execute`, on any thread: its duration
    less the events nested in it), and the waits for the other shard's thread."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(next(trace_dir.rglob("*.xplane.pb")).read_bytes())
    plane = next(p for p in space.planes if p.name == "/host:CPU")
    total: collections.Counter[str] = collections.Counter()
    for line in plane.lines:
        stack: list[list[Any]] = []  # [end_ps, name, self_ps, inside the executor of an XLA program]

        def close(entry: list[Any]) -> None:
            _, name, own, inside = entry
            if inside and ("::" not in name or name in WAITING):
                total[name] += own / 1e9

        for event in sorted(line.events, key=lambda e: (e.offset_ps, -e.duration_ps)):
            start, end = event.offset_ps, event.offset_ps + event.duration_ps
            while stack and stack[-1][0] <= start:
                close(stack.pop())
            inside = bool(stack) and (stack[-1][3] or stack[-1][1] == THUNKS)
            if stack:
                stack[-1][2] -= event.duration_ps
            stack.append([end, plane.event_metadata[event.metadata_id].name, event.duration_ps, inside])
        for entry in stack:
            close(entry)
    return total


def profile_ours(case: bench.Case, x: np.ndarray, y: np.ndarray) -> tuple[collections.Counter[str], float]:
    import tensorflow as tf

    variant = bench.mnist_rnn_variant(case, x.shape[1:], "/CPU:0")
    variant.warm(x, y)
    trace_dir = Path(tempfile.mkdtemp(prefix="mnist-rnn-xprof-"))
    try:
        tf.profiler.experimental.start(str(trace_dir))
        start = time.perf_counter()
        variant.train(x, y)
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        return xla_ops(trace_dir), wall
    finally:
        shutil.rmtree(trace_dir, ignore_errors=True)


def profile_torch(case: bench.Case, x: np.ndarray, y: np.ndarray) -> tuple[collections.Counter[str], float]:
    import torch

    variant = bench.torch_variant(case, x.shape[1:])
    assert variant is not None
    variant.warm(x, y)
    time.sleep(bench.SETTLE_SECONDS)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        variant.train(x, y)
        wall = time.perf_counter() - start
    ops = collections.Counter({e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()})
    return ops, wall


def summary(
    ops: collections.Counter[str], wall: float, batches: int, flops: float, gflops: float
) -> dict[str, Any]:
    waits = sum(ms for name, ms in ops.items() if name in WAITING)
    work = {name: ms for name, ms in ops.items() if name not in WAITING}
    matmul = sum(ms for name, ms in work.items() if MATMUL.search(name))
    total = sum(work.values())
    return {
        "wall_ms_per_batch": 1e3 * wall / batches,
        "op_ms_per_batch": total / batches,
        "matmul_ms_per_batch": matmul / batches,
        "other_ms_per_batch": (total - matmul) / batches,
        "wait_ms_per_batch": waits / batches,
        "matmul_share_of_op_time": matmul / total if total else None,
        "matmul_gflops": flops * bench.BATCH / (matmul / batches / 1e3) / 1e9 if matmul else None,
        "matmul_gflops_share_of_machine": (
            flops * bench.BATCH / (matmul / batches / 1e3) / 1e9 / gflops if matmul else None
        ),
        "top_ops_ms_per_batch": {
            name: ms / batches for name, ms in collections.Counter(work).most_common(12)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", default=["lstm1x128-rows", "lstm2x128-rows"])
    parser.add_argument("--batches", type=int, default=64)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    chosen = [c for c in bench.cases() if c.name in args.cases]
    bench.import_tensorflow()
    from mnist_rnn.layouts import make_sequences

    images, labels = _images()
    results = []
    for case in chosen:
        n = bench.BATCH * args.batches
        x = make_sequences(images[:n], case.layout)
        y = labels[:n]
        theirs, their_wall = profile_torch(case, x, y)  # PyTorch first: see bench.py on triton
        ours, our_wall = profile_ours(case, x, y)
        gflops = bench.matmul_gflops()
        flops = bench.flops_per_sample(case)["train"]
        results.append({
            "case": case.name,
            "batches": args.batches,
            "flops_per_sample_train": flops,
            "machine_matmul_gflops": gflops,
            "mnist_rnn": summary(ours, our_wall, args.batches, flops, gflops),
            "torch": summary(theirs, their_wall, args.batches, flops, gflops),
        })  # fmt: skip
        print(json.dumps(results[-1], indent=1), flush=True)
    report = {"machine": bench.machine_facts("/CPU:0"), "results": results}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")


def _images() -> tuple[np.ndarray, np.ndarray]:
    from mnist_rnn.data import load_embedded

    arrays = load_embedded()
    return arrays["train_images"], arrays["train_labels"].astype(np.int32)


if __name__ == "__main__":
    main()
