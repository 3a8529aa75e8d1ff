"""Whole `mnist-rnn train` runs, A against B, interleaved: for settings that act on the process and so
cannot be compared inside one (threads per op, allocator settings, XLA_FLAGS).

    python scripts/ab_runs.py configs/default.yaml --set train.epochs=3 --set data.limit_train=21384 \\
        --a train.cpu_threads=1 --reps 3
    python scripts/ab_runs.py configs/default.yaml --a-env XLA_FLAGS=--xla_cpu_prefer_vector_width=256

Each repetition trains A then B (then B then A the next time, so neither always runs first) as fresh
processes into a temporary folder, and reads back per run: the epochs' fit seconds (history.csv; the
first epoch, which compiles, is reported apart), user and system CPU seconds of the process
(`getrusage` of the child), and the test accuracy. It prints medians and the ratios B/A of epoch time
(> 1: A is faster) and A's and B's system share of CPU time, and writes the JSON (--out) with the
machine's CPU model and vector extensions.

Pairs (mnist_rnn/measure.py): each later epoch of A is paired with the same epoch of the B run beside it
(B/A of its seconds), and each run's CPU seconds with its partner's; each set is summarised as the median
with a bootstrap 90% interval and a verdict ("not decided" when the interval holds 1.0). An epoch is the
shortest slice a whole process offers, so these pairs are coarser than scripts/bench.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mnist_rnn import runs
from mnist_rnn.config_files import config_to_dict, flatten
from mnist_rnn.execution import cpu_description
from mnist_rnn.measure import summarise


def train_once(config: Path, overrides: list[str], run_dir: Path, env: list[str]) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sets = [arg for item in overrides for arg in ("--set", item)]
    command = [sys.executable, "-m", "mnist_rnn", "train", "-c", str(config), *sets]
    command += ["--run-dir", str(run_dir)]
    environment = os.environ | dict(item.split("=", 1) for item in env)
    subprocess.run(command, check=True, capture_output=True, env=environment)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = [float(row["seconds"]) for row in runs.read_history(run_dir)]
    metrics = runs.read_json(run_dir / runs.METRICS)
    saved = flatten(config_to_dict(runs.read_run_config(run_dir)))
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {
        "first_epoch_s": seconds[0],
        "later_epoch_s": statistics.median(seconds[1:]) if len(seconds) > 1 else None,
        # the machine's slow spells stretch whole epochs (e.g. to exactly 41.0 s, whatever runs); the
        # fastest epoch is the one least hit by them (timeit's reasoning)
        "fastest_epoch_s": min(seconds[1:]) if len(seconds) > 1 else None,
        "epoch_s": seconds,
        "user_s": user,
        "system_s": system,
        "system_share": system / (user + system),
        "test_accuracy": metrics["test_accuracy"],
        # each KEY=VALUE as the run's own config.yaml holds it: proof that the setting reached the run
        "applied": {key: saved[key] for key, _, _ in (o.partition("=") for o in overrides)},
        "xla_flags": runs.read_command_facts(run_dir).get("xla flags"),  # as the run recorded them
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    keys = ("first_epoch_s", "later_epoch_s", "fastest_epoch_s", "user_s", "system_s", "system_share")
    return {k: statistics.median(r[k] for r in runs) if runs[0][k] is not None else None for k in keys}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", type=Path)
    parser.add_argument("--set", dest="common", action="append", default=[], help="KEY=VALUE for both")
    parser.add_argument("--a", action="append", default=[], help="KEY=VALUE for A only")
    parser.add_argument("--b", action="append", default=[], help="KEY=VALUE for B only (default: none)")
    parser.add_argument("--a-env", action="append", default=[], help="NAME=VALUE in A's environment")
    parser.add_argument("--b-env", action="append", default=[], help="NAME=VALUE in B's environment")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("ab_runs.json"))
    args = parser.parse_args(argv)
    variants = {"A": args.common + args.a, "B": args.common + args.b}
    envs = {"A": args.a_env, "B": args.b_env}
    results: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory(prefix="mnist-rnn-ab-") as root:
        for rep in range(args.reps):
            for name in ("A", "B") if rep % 2 == 0 else ("B", "A"):
                result = train_once(args.config, variants[name], Path(root) / f"{name}{rep}", envs[name])
                results[name].append(result)
                print(f"rep {rep + 1} {name}: {json.dumps(result)}", flush=True)
    med = {name: summary(runs) for name, runs in results.items()}
    epoch_pairs = [
        b_s / a_s
        for a, b in zip(results["A"], results["B"], strict=True)
        for a_s, b_s in zip(a["epoch_s"][1:], b["epoch_s"][1:], strict=False)
    ]
    cpu_pairs = [
        (b["user_s"] + b["system_s"]) / (a["user_s"] + a["system_s"])
        for a, b in zip(results["A"], results["B"], strict=True)
    ]
    epoch_a, epoch_b = med["A"]["later_epoch_s"], med["B"]["later_epoch_s"]
    report = {
        "machine": {"cpu": cpu_description()},
        "config": str(args.config),
        "settings": variants,
        "environments": envs,
        "runs": results,
        "medians": med,
        "epoch_time_ratio_b_over_a": epoch_b / epoch_a if epoch_a and epoch_b else None,
        "paired": {"epoch_time_b_over_a": summarise(epoch_pairs), "cpu_time_b_over_a": summarise(cpu_pairs)},
    }
    for name in ("A", "B"):
        m = med[name]
        print(
            f"{name} ({' '.join(variants[name] + envs[name]) or 'as configured'}): "
            f"epoch {m['later_epoch_s']} s "
            f"(fastest {m['fastest_epoch_s']} s, first {m['first_epoch_s']:.1f} s), "
            f"user {m['user_s']:.1f} s, system {m['system_s']:.1f} s "
            f"({m['system_share']:.1%} of CPU time)"
        )
    if report["epoch_time_ratio_b_over_a"]:
        ratio = report["epoch_time_ratio_b_over_a"]
        print(f"epoch time B/A: {ratio:.2f} (> 1: A is faster); {cpu_description()}")
    for name, p in report["paired"].items():
        if p["median"] is not None:
            low, high = p["ci90"]
            interval = f"[{low:.2f}-{high:.2f}]"
            print(f"paired {name}: {p['median']:.2f} {interval}, {p['pairs']} pairs: {p['verdict']}")
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
