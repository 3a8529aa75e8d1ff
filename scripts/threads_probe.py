"""Process-wide settings for mnist-rnn's training and scoring (threads per op, XLA:CPU flags), with PyTorch
as the yardstick.

TensorFlow's intra-op pool and XLA_FLAGS are fixed for a whole process once TensorFlow's runtime starts, so
two settings cannot be compared inside one process. Each process here takes one setting first, then trains
mnist-rnn's step (the path `mnist-rnn train` plans for the case: fused LSTM, XLA, shards) and PyTorch's in
alternating slices, and scores with each in alternating slices; the paired ratios ours/PyTorch are what
compare across processes, since PyTorch ignores both settings. The settings alternate process by process
(`--reps` processes of each), so the spread between processes of one setting is the A/A.

    python scripts/threads_probe.py --cases lstm1x128-rows lstm2x128-rows gru2x128-rows --reps 3 \\
        --rounds 8 --settings one default --out docs/bench/DATE-CPU-threads.json

`--settings` names entries of SETTINGS. execution.ONE_THREAD_VECTOR and cpu.WIDE_VECTOR_FLAG cite runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mnist_rnn.cpu import WIDE_VECTOR_FLAG  # noqa: E402

# name: (threads per op, None for TensorFlow's default of one per logical CPU; XLA_FLAGS, labelled)
SETTINGS: dict[str, tuple[int | None, str, str]] = {
    "one": (1, "", "1 thread per op"),
    "default": (None, "", "TensorFlow's default threads"),
    "one-256": (1, "--xla_cpu_prefer_vector_width=256", "1 thread, XLA's 256-bit vectors"),
    "one-512": (1, WIDE_VECTOR_FLAG, "1 thread, 512-bit vectors"),
}


def child(case_name: str, threads: int | None, rounds: int) -> dict[str, Any]:
    """One process: the pool set, then `rounds` pairs of slices ours, PyTorch, ours, ... for training, and
    as many for scoring."""
    import bench  # keeps triton out before torch loads (see bench.py)

    tf = bench.import_tensorflow()
    from mnist_rnn.data import load_embedded
    from mnist_rnn.execution import set_cpu_threads
    from mnist_rnn.layouts import make_sequences
    from mnist_rnn.measure import neighbour_ratio, summarise

    in_effect = set_cpu_threads(threads)
    case = next(c for c in bench.cases() if c.name == case_name)
    arrays = load_embedded()
    n = case.slice_batches * bench.BATCH
    x = make_sequences(arrays["train_images"][: max(n, case.eval_samples)], case.layout)
    y = arrays["train_labels"][:n].astype("int32")
    x_eval, x = x[: case.eval_samples], x[:n]
    ours = bench.mnist_rnn_variant(case, x.shape[1:], "/CPU:0")
    theirs = bench.torch_variant(case, x.shape[1:])
    if theirs is None:
        raise SystemExit("the PyTorch yardstick needs the bench extra: pip install -e '.[bench]'")
    for variant in (ours, theirs):
        variant.warm(x, y)
        variant.predict(x_eval)

    def rate(variant: bench.Variant, what: str) -> float:
        start = time.perf_counter()
        if what == "train":
            variant.train(x, y)
        else:
            variant.predict(x_eval)
        samples_per_s = (n if what == "train" else len(x_eval)) / (time.perf_counter() - start)
        if variant is theirs:
            time.sleep(bench.SETTLE_SECONDS)  # PyTorch's OpenMP workers spin on after a slice
        return samples_per_s

    result: dict[str, Any] = {
        "threads_in_effect": in_effect or tf.config.threading.get_intra_op_parallelism_threads(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "execution": ours.execution,
    }
    for what in ("train", "eval"):
        pairs, rates = [], [rate(ours, what)]
        for _ in range(rounds):
            other, after = rate(theirs, what), rate(ours, what)
            pairs.append(neighbour_ratio(rates[-1], other, after))
            rates.append(after)
        key = "" if what == "train" else "eval_"  # training's keys as before eval was measured too
        result |= {
            f"{key}ours_over_torch": summarise(pairs),
            f"{key}pairs": pairs,
            f"ours_{what}_samples_per_s_median": statistics.median(rates),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["lstm1x128-rows", "lstm2x128-rows", "gru2x128-rows"])
    parser.add_argument("--settings", nargs="+", default=["one", "default"], choices=SETTINGS)
    parser.add_argument("--reps", type=int, default=3, help="processes of each setting, per case")
    parser.add_argument("--rounds", type=int, default=8, help="pairs of slices per process")
    parser.add_argument("--out", type=Path, default=Path("threads.json"))
    parser.add_argument("--child", nargs=3, metavar=("CASE", "THREADS", "ROUNDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, threads, rounds = args.child
        print("RESULT", json.dumps(child(case, int(threads) or None, int(rounds))), flush=True)
        return

    from mnist_rnn.execution import cpu_description
    from mnist_rnn.measure import summarise

    results = []
    for case in args.cases:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.settings}
        for rep in range(args.reps):
            for name in args.settings if rep % 2 == 0 else reversed(args.settings):
                threads, flags, _ = SETTINGS[name]
                command = [sys.executable, __file__, "--child", case, str(threads or 0), str(args.rounds)]
                env = os.environ | {"XLA_FLAGS": flags}  # "": the plan's own (tf_import.py)
                out = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
                runs[name].append(json.loads(out.split("RESULT ", 1)[1]))
                done = runs[name][-1]
                print(case, name, done["ours_over_torch"]["median"], done["eval_ours_over_torch"]["median"])
        results.append({
            "case": case,
            **{name: {
                "pooled_ours_over_torch": summarise([p for run in done for p in run["pairs"]]),
                "process_medians": [run["ours_over_torch"]["median"] for run in done],
                "pooled_eval_ours_over_torch": summarise([p for run in done for p in run["eval_pairs"]]),
                "eval_process_medians": [run["eval_ours_over_torch"]["median"] for run in done],
                "processes": done,
            } for name, done in runs.items()},
        })  # fmt: skip
    machine = {"cpu": cpu_description(), "python": sys.version.split()[0]}
    labels = {name: SETTINGS[name][2] for name in args.settings}
    report = {"machine": machine, "reps": args.reps, "rounds": args.rounds, "settings": labels}
    args.out.write_text(json.dumps(report | {"results": results}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
