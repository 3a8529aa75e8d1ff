"""The sharded training step against the single XLA step, in one process: `train.batch_shards` auto (one
shard per core) vs 1, the same model and path otherwise (what `mnist-rnn train` builds for the case).

Paired slices as in scripts/bench.py (mnist_rnn/measure.py): one-shard slice, sharded slice, one-shard
slice, ...; each sharded slice over the geometric mean of its neighbours. A second one-shard copy is the
A/A. Writes JSON with the machine; docs/bench/*-shards-ab.json holds a run of it.

    python scripts/shards_ab.py --rounds 12 --out docs/bench/DATE-CPU-shards-ab.json
    python scripts/shards_ab.py --against 2 --shards 4     # two shard counts against each other
    python scripts/shards_ab.py --scoring --shards 2       # scoring (evaluate.Scorer) instead of training
    python scripts/shards_ab.py --scoring --fused-scoring --shards 2 --against 2   # the fused twin vs Keras's

The keys keep their names whatever is compared: `sharded_over_one` is `--shards` over `--against`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from mnist_rnn.config import Config, DataConfig, ModelConfig, TrainConfig  # noqa: E402
from mnist_rnn.data import load_embedded  # noqa: E402
from mnist_rnn.evaluate import Scorer  # noqa: E402
from mnist_rnn.execution import cpu_description, plan_execution  # noqa: E402
from mnist_rnn.loop import compile_model, fit_epoch  # noqa: E402
from mnist_rnn.measure import neighbour_ratio, summarise  # noqa: E402
from mnist_rnn.mnist import LAYOUT_SHAPES  # noqa: E402
from mnist_rnn.model import build_model  # noqa: E402
from mnist_rnn.tf_import import import_tensorflow  # noqa: E402

BATCH = 128
SCORED = {"rows": 4000, "pixels": 2000}  # test images per scoring slice: 4 or 2 eval batches of 1,000
CASES = {  # name: (cell, units, layout, batches per slice)
    "lstm1x128-rows": ("lstm", (128,), "rows", 32),
    "lstm2x128-rows": ("lstm", (128, 128), "rows", 24),
    "gru2x128-rows": ("gru", (128, 128), "rows", 24),
    "lstm1x128-pixels": ("lstm", (128,), "pixels", 2),
    "lstm2x128-pixels": ("lstm", (128, 128), "pixels", 1),
}


def _trainer(case: str, shards: int | None) -> tuple[Any, str]:
    cell, units, layout, _ = CASES[case]
    train = TrainConfig(clipnorm=None, learning_rate=1e-3, batch_size=BATCH, batch_shards=shards)
    cfg = Config(data=DataConfig(layout=layout), model=ModelConfig(cell=cell, units=units), train=train)
    execution = plan_execution(cfg, "/CPU:0")
    model = build_model(cfg.model, LAYOUT_SHAPES[layout], fused=execution.fused, shards=execution.shards)
    compile_model(model, cfg.train, execution.xla)
    return model, execution.describe()


def paired(rate: Callable[[str], float], rounds: int, subject: str, others: list[str]) -> dict[str, list]:
    """Slices subject, other, subject, other, ... (the others rotated each round): each other's slice over
    the subject's either side of it (mnist_rnn/measure.py), so the ratio is the other's over the subject's."""
    pairs: dict[str, list[float]] = {name: [] for name in others}
    before = rate(subject)
    for r in range(rounds):
        for name in others[r % len(others) :] + others[: r % len(others)]:
            other = rate(name)
            after = rate(subject)
            pairs[name].append(1.0 / neighbour_ratio(before, other, after))
            before = after
    return pairs


def training_rate(models: dict[str, Any], x: np.ndarray, y: np.ndarray) -> Callable[[str], float]:
    """Each model trained once over the first half (compiles, traces: warm-up); then a function that
    trains a named model over one half, the halves in turn, and returns its samples per second."""
    half = len(x) // 2
    for model in models.values():
        fit_epoch(model, x[:half], y[:half], BATCH, "/CPU:0")
    turn = 0

    def rate(name: str) -> float:
        nonlocal turn
        lo = (turn % 2) * half
        turn += 1
        start = time.perf_counter()
        fit_epoch(models[name], x[lo : lo + half], y[lo : lo + half], BATCH, "/CPU:0")
        return half / (time.perf_counter() - start)

    return rate


def measure_scoring(
    case: str, rounds: int, shards: int, against: int = 1, fused: bool = False
) -> dict[str, Any]:
    """The same pairing for scoring: `evaluate.Scorer` with `shards` XLA calls per batch against `against`;
    with `fused`, the variant's twin runs the fused LSTM and the baselines' Keras's layers."""
    cell, units, layout, _ = CASES[case]
    cfg = Config(data=DataConfig(layout=layout), model=ModelConfig(cell=cell, units=units))
    x = load_embedded()["test_images"][: SCORED[layout]].astype(np.float32) / 255
    x = x.reshape(-1, *LAYOUT_SHAPES[layout])
    model = build_model(cfg.model, LAYOUT_SHAPES[layout])
    baseline = False if fused else None  # None: what `execution.scoring_fused` picks
    scorers = {
        "one": Scorer(cfg, True, against, fused=baseline),
        "sharded": Scorer(cfg, True, shards, fused=True if fused else None),
        "one_aa": Scorer(cfg, True, against, fused=baseline),
    }
    for scorer in scorers.values():
        scorer(model, x)  # compile: warm-up
    difference = float(np.abs(scorers["one"](model, x) - scorers["sharded"](model, x)).max())

    def rate(name: str) -> float:
        start = time.perf_counter()
        scorers[name](model, x)
        return len(x) / (time.perf_counter() - start)

    pairs = paired(rate, rounds, "one", ["sharded", "one_aa"])
    return {
        "case": case,
        "scoring": True,
        "fused_over_keras": fused,
        "shards": shards,
        "against": against,
        "max_probability_difference": difference,
        "sharded_over_one": summarise(pairs["sharded"]),
        "aa_over_one": summarise(pairs["one_aa"]),
    }


def measure(case: str, rounds: int, shards: int | None = None, against: int = 1) -> dict[str, Any]:
    _, _, layout, batches = CASES[case]
    arrays = load_embedded()
    n = 2 * batches * BATCH
    x = (arrays["train_images"][:n].astype(np.float32) / 255).reshape(-1, *LAYOUT_SHAPES[layout])
    y = arrays["train_labels"][:n].astype(np.int32)
    variants = {
        "one": _trainer(case, against),
        "sharded": _trainer(case, shards),
        "one_aa": _trainer(case, against),
    }
    rate = training_rate({name: model for name, (model, _) in variants.items()}, x, y)
    pairs = paired(rate, rounds, "one", ["sharded", "one_aa"])
    return {
        "case": case,
        "shards": shards,
        "against": against,
        "paths": {name: describe for name, (_, describe) in variants.items()},
        "sharded_over_one": summarise(pairs["sharded"]),
        "aa_over_one": summarise(pairs["one_aa"]),
    }


def write_results(out: Path, rounds: int, results: list[dict[str, Any]]) -> None:
    """The JSON that docs/bench keeps: the machine (CPU kind), the rounds and each case's result."""
    import tensorflow as tf

    machine = {
        "cpu": cpu_description(),
        "cpus": os.cpu_count(),
        "tensorflow": tf.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    out.write_text(json.dumps({"machine": machine, "rounds": rounds, "results": results}, indent=1))
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--out", type=Path, default=Path("shards-ab.json"))
    parser.add_argument("--shards", type=int, default=None, help="the variant's shards [default: auto]")
    parser.add_argument("--against", type=int, default=1, help="the baseline's shards [default: 1]")
    parser.add_argument("--scoring", action="store_true", help="time scoring, not training")
    parser.add_argument(
        "--fused-scoring", action="store_true", help="with --scoring: the fused LSTM twin against Keras's"
    )
    args = parser.parse_args()
    # as `mnist-rnn train` starts: the XLA flags and instruction caps it plans (cpu.py) are set before
    # TensorFlow loads (building the first model would load it without them)
    import_tensorflow()
    results = []
    for case in args.cases:
        if args.scoring:
            results.append(
                measure_scoring(case, args.rounds, args.shards or 2, args.against, args.fused_scoring)
            )
        else:
            results.append(measure(case, args.rounds, args.shards, args.against))
        print(json.dumps(results[-1]), flush=True)
    write_results(args.out, args.rounds, results)


if __name__ == "__main__":
    main()
