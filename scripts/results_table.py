"""Train shipped configs through the real CLI and print the README's results table (Markdown).

    python scripts/results_table.py configs/default.yaml configs/lstm.yaml configs/gru_stacked.yaml

Each config is trained in its own process (`mnist-rnn train`), one after another so they do not compete
for cores; wall time covers the whole command (start-up, data loading, validation, checkpoints, test).
Run directories go under --root (default: a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mnist_rnn.config_files import load_config
from mnist_rnn.execution import Execution


def measure(config: Path, root: Path, extra: list[str]) -> dict:
    run_dir = root / config.stem
    cmd = [
        sys.executable,
        "-m",
        "mnist_rnn",
        "train",
        "--config",
        str(config),
        "--run-dir",
        str(run_dir),
        *extra,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"config": config, "wall": wall, **metrics}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--root", type=Path, help="keep run directories here (default: temporary)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="passed to every train")
    args = parser.parse_args(argv)

    root = args.root or Path(tempfile.mkdtemp(prefix="mnist-rnn-results-"))
    extra = [arg for item in args.overrides for arg in ("--set", item)]
    rows = [measure(config, root, extra) for config in args.configs]
    print(
        "| config | model | training path | test accuracy | best val accuracy (epoch) | epochs "
        "| s/epoch (fit) | wall time |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        model = load_config(root / r["config"].stem / "config.yaml").model
        path = Execution(**r["execution"])
        keras_layer = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}[model.cell]
        kernel = ("fused LSTM" if path.fused else f"Keras {keras_layer}") + (" + XLA" if path.xla else "")
        print(
            f"| `{r['config']}` | {model.cell} {list(model.units)} | {kernel} | "
            f"{r['test_accuracy']:.2%} | "
            f"{r['best_val_accuracy']:.2%} ({r['best_epoch']}) | {r['epochs_run']} | "
            f"{r['train_seconds'] / r['epochs_run']:.1f} | {r['wall'] / 60:.1f} min |"
        )
    if args.root is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
