"""What curves.png costs a run: the time of `plots.plot_curves` (which training calls once per epoch) on a
finished run's own history, against that run's epoch time.

    python scripts/plot_overhead.py RUN_DIR [--repeats 12]

The first call includes importing matplotlib (paid once per run); the median of the rest is the cost of
each later epoch's refresh. Prints both and their share of the run's wall time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--repeats", type=int, default=12)
    args = parser.parse_args()

    from mnist_rnn import runs

    history = runs.read_history(args.run)
    metrics = runs.read_json(args.run / runs.METRICS)
    epochs = len(history)
    start = time.perf_counter()
    from mnist_rnn.plots import plot_curves  # matplotlib is imported by the first call, as in training

    with tempfile.TemporaryDirectory() as tmp:
        times = []
        for i in range(args.repeats):
            start = time.perf_counter() if i else start
            plot_curves(history[: 1 + i % epochs], metrics["best_epoch"], Path(tmp) / "curves.png")
            times.append(time.perf_counter() - start)
    first, each = times[0], statistics.median(times[1:])
    total = first + each * (epochs - 1)
    fit = float(metrics["train_seconds"])
    print(f"run {args.run}: {epochs} epochs, {fit:.0f} s of fit ({fit / epochs:.1f} s an epoch)")
    print(f"first curves.png (with matplotlib's import): {first * 1000:.0f} ms")
    print(f"each later one: {each * 1000:.0f} ms")
    print(f"all {epochs} refreshes: {total:.2f} s = {100 * total / fit:.2f}% of the fit time")


if __name__ == "__main__":
    main()
