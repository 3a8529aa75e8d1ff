"""Threads per op (TensorFlow's intra-op pool) for mnist-rnn's training step, with PyTorch as the yardstick.

The pool's size is fixed for a whole process once TensorFlow's runtime starts, so two sizes cannot be
compared inside one process. Each process here sets the size first, then trains mnist-rnn's step (the path
`mnist-rnn train` plans for the case: fused LSTM, XLA, shards) and PyTorch's in alternating slices; the
paired ratio ours/PyTorch is what compares across processes, since PyTorch ignores the setting. The
settings alternate process by process (`--reps` processes of each), so the spread between processes of one
setting is the A/A.

    python scripts/threads_probe.py --cases lstm1x128-rows lstm2x128-rows gru2x128-rows --reps 3 \\
        --rounds 8 --out docs/bench/DATE-CPU-threads.json

execution.ONE_THREAD_VECTOR cites a run of it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SETTINGS = {"one": 1, "default": None}  # None: TensorFlow's default, one thread per logical CPU


def child(case_name: str, threads: int | None, rounds: int) -> dict[str, Any]:
    """One process: the pool set, then `rounds` pairs of slices ours, PyTorch, ours, ..."""
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
    x = make_sequences(arrays["train_images"][:n], case.layout)
    y = arrays["train_labels"][:n].astype("int32")
    ours = bench.mnist_rnn_variant(case, x.shape[1:], "/CPU:0")
    theirs = bench.torch_variant(case, x.shape[1:])
    if theirs is None:
        raise SystemExit("the PyTorch yardstick needs the bench extra: pip install -e '.[bench]'")
    ours.warm(x, y)
    theirs.warm(x, y)

    def rate(variant: bench.Variant) -> float:
        start = time.perf_counter()
        variant.train(x, y)
        samples_per_s = n / (time.perf_counter() - start)
        if variant is theirs:
            time.sleep(bench.SETTLE_SECONDS)  # PyTorch's OpenMP workers spin on after a slice
        return samples_per_s

    pairs, rates = [], [rate(ours)]
    for _ in range(rounds):
        other, after = rate(theirs), rate(ours)
        pairs.append(neighbour_ratio(rates[-1], other, after))
        rates.append(after)
    return {
        "threads_in_effect": in_effect or tf.config.threading.get_intra_op_parallelism_threads(),
        "execution": ours.execution,
        "ours_over_torch": summarise(pairs),
        "pairs": pairs,
        "ours_samples_per_s_median": statistics.median(rates),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["lstm1x128-rows", "lstm2x128-rows", "gru2x128-rows"])
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
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SETTINGS}
        for rep in range(args.reps):
            order = list(SETTINGS) if rep % 2 == 0 else list(reversed(SETTINGS))
            for name in order:
                threads = str(SETTINGS[name] or 0)
                command = [sys.executable, __file__, "--child", case, threads, str(args.rounds)]
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                runs[name].append(json.loads(out.split("RESULT ", 1)[1]))
                print(case, name, json.dumps(runs[name][-1]["ours_over_torch"]), flush=True)
        results.append({
            "case": case,
            **{name: {
                "pooled_ours_over_torch": summarise([p for run in done for p in run["pairs"]]),
                "process_medians": [run["ours_over_torch"]["median"] for run in done],
                "processes": done,
            } for name, done in runs.items()},
        })  # fmt: skip
    machine = {"cpu": cpu_description(), "python": sys.version.split()[0]}
    report = {"machine": machine, "reps": args.reps, "rounds": args.rounds, "results": results}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
