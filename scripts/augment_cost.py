"""What data.augment costs in training throughput: one model trained on plain batches and on augmented
batches of the same images in turn, in one process (what `mnist-rnn train` builds for the config).

Paired slices as in scripts/bench.py (mnist_rnn/measure.py): plain slice, augmented slice, plain slice,
...; each augmented slice's rate over the geometric mean of its plain neighbours. A second plain pipeline
is the A/A. Each slice is a fresh `fit` over its batches, so the augmented pipeline starts cold every
slice (an epoch starts cold once): the cost it shows is an upper bound. Writes JSON with the machine.

    python scripts/augment_cost.py configs/row_best.yaml --rounds 12 \\
        --out docs/bench/DATE-CPU-augment-cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shards_ab import paired, write_results  # noqa: E402

from mnist_rnn.augment import augmented_batches  # noqa: E402
from mnist_rnn.config_files import load_config  # noqa: E402
from mnist_rnn.data import load_dataset  # noqa: E402
from mnist_rnn.execution import plan_execution  # noqa: E402
from mnist_rnn.layouts import input_permutation, pixel_index  # noqa: E402
from mnist_rnn.loop import array_batches, compile_model, fit_batches  # noqa: E402
from mnist_rnn.model import build_model  # noqa: E402


def measure(config: Path, rounds: int, batches: int) -> dict[str, Any]:
    cfg = load_config(config)
    if cfg.data.augment is None:
        raise SystemExit(f"{config}: data.augment is not set; nothing to measure")
    data = load_dataset(cfg.data, cfg.seed)
    assert data.train_images is not None
    execution = plan_execution(cfg, "/CPU:0")
    model = build_model(cfg.model, data.input_shape, fused=execution.fused, shards=execution.shards)
    compile_model(model, cfg.train, execution.xla)
    n = batches * cfg.train.batch_size
    index = pixel_index(cfg.data.layout, input_permutation(cfg.data))
    augment, size = cfg.data.augment, cfg.train.batch_size
    step = 0

    def dataset(name: str) -> Any:
        nonlocal step
        lo = (step % 4) * n  # four slices of images in turn, so no slice repeats the one before
        step += 1
        if name == "augmented":
            images, labels = data.train_images[lo : lo + n], data.train.y[lo : lo + n]  # type: ignore[index]
            return augmented_batches(images, labels, size, augment, index, (cfg.seed, 0, step))
        return array_batches(data.train.x[lo : lo + n], data.train.y[lo : lo + n], size)

    def rate(name: str) -> float:
        batched = dataset(name)
        start = time.perf_counter()
        fit_batches(model, batched, "/CPU:0")
        return n / (time.perf_counter() - start)

    for name in ("plain", "augmented"):  # compile and trace: warm-up
        rate(name)
    pairs = paired(rate, rounds, "plain", ["augmented", "plain_aa"])
    return {
        "config": str(config),
        "augment": augment.model_dump(),
        "path": execution.describe(),
        "batches_per_slice": batches,
        "augmented_over_plain": summarise_pairs(pairs["augmented"]),
        "aa_over_plain": summarise_pairs(pairs["plain_aa"]),
    }


def summarise_pairs(ratios: list[float]) -> dict[str, Any]:
    from mnist_rnn.measure import summarise

    return summarise(ratios, target=0.95)  # the bound: at most 5% slower


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--batches", type=int, default=24, help="batches per slice [24]")
    parser.add_argument("--out", type=Path, default=Path("augment-cost.json"))
    args = parser.parse_args()
    result = measure(args.config, args.rounds, args.batches)
    print(json.dumps(result), flush=True)
    write_results(args.out, args.rounds, [result])


if __name__ == "__main__":
    main()
