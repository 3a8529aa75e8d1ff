"""An epoch's idle tail: `fit` over our tf.data pipeline with tf.data's autotuning on (TensorFlow's default)
against off (what `loop.fit_batches` now sets), in one process, the same model and batches.

    python scripts/data_autotune_ab.py [--case lstm2x128-rows] [--rounds 20] [--out PATH.json]

Each round trains one slice of `--batches` batches with autotuning on, one with it off and a second one
with it off (the A/A control), in an order rotated each round. Per slice it records the wall time of the
`fit` call and when its last batch ended (a Keras callback), so the idle time between the two shows. A
round's ratio (`speedup`) is the on slice's time over the off one's (above 1: off is faster); it and the
control are summarised as the median with a bootstrap 90% interval (mnist_rnn/measure.py). The model,
threads per op and shards are what `mnist-rnn train` would choose for the case (scripts/bench.py's cases).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench  # noqa: E402  (the cases and machine facts)

from mnist_rnn.tf_import import import_tensorflow  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="lstm2x128-rows")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batches", type=int, default=32, help="batches of 128 per slice")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import_tensorflow()
    import keras
    import numpy as np

    from mnist_rnn.data import load_embedded
    from mnist_rnn.execution import plan_execution, planned_cpu_threads, set_cpu_threads
    from mnist_rnn.layouts import make_sequences
    from mnist_rnn.loop import array_batches, compile_model, without_autotune
    from mnist_rnn.measure import summarise
    from mnist_rnn.mnist import LAYOUT_SHAPES, Layout
    from mnist_rnn.model import build_model

    case = next(c for c in bench.cases() if c.name == args.case)
    cfg = bench.case_config(case)
    execution = plan_execution(cfg, "/CPU:0")
    set_cpu_threads(planned_cpu_threads(cfg, execution))
    model = build_model(
        cfg.model, LAYOUT_SHAPES[Layout(case.layout)], fused=execution.fused, shards=execution.shards
    )
    compile_model(model, cfg.train, execution.xla)
    arrays = load_embedded()
    n = args.batches * bench.BATCH
    x = make_sequences(arrays["train_images"][:n], case.layout)
    y = arrays["train_labels"][:n].astype(np.int32)
    ends: list[float] = []

    class LastBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            ends.append(time.perf_counter())

    def pipeline(autotune: bool) -> Any:
        batches = array_batches(x, y, bench.BATCH)
        return batches if autotune else without_autotune(batches)

    variants = {"on": True, "off": False, "off_aa": False}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    idle: dict[str, list[float]] = {name: [] for name in variants}
    for autotune in variants.values():  # compiles, and a first pass of each
        model.fit(pipeline(autotune), epochs=1, verbose=0)
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % 3 :] + names[: r % 3]:
            ends.clear()
            start = time.perf_counter()
            model.fit(pipeline(variants[name]), epochs=1, verbose=0, callbacks=[LastBatch()])
            stop = time.perf_counter()
            seconds[name].append(stop - start)
            idle[name].append(stop - ends[-1])
    report = {
        "machine": bench.machine_facts("/CPU:0"),
        "case": case.name,
        "execution": execution.describe(),
        "rounds": args.rounds,
        "batches_per_slice": args.batches,
        "slice_s_median": {name: float(np.median(s)) for name, s in seconds.items()},
        "idle_after_last_batch_s_median": {name: float(np.median(s)) for name, s in idle.items()},
        "idle_after_last_batch_s_max": {name: max(s) for name, s in idle.items()},
        "slices_idle_over_50ms": {name: sum(i > 0.05 for i in s) for name, s in idle.items()},
        "slices": {name: [round(s, 4) for s in values] for name, values in seconds.items()},
        "idle": {name: [round(s, 4) for s in values] for name, values in idle.items()},
        "speedup": summarise([a / b for a, b in zip(seconds["on"], seconds["off"], strict=True)]),
        "aa": summarise([a / b for a, b in zip(seconds["off_aa"], seconds["off"], strict=True)]),
    }
    print(json.dumps({k: v for k, v in report.items() if k not in ("machine", "slices", "idle")}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
