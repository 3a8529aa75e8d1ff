"""The sharded training step against the single XLA step, in one process: `train.batch_shards` auto (one
shard per core) vs 1, the same model and path otherwise (what `mnist-rnn train` builds for the case).

Paired slices as in scripts/bench.py (mnist_rnn/measure.py): one-shard slice, sharded slice, one-shard
slice, ...; each sharded slice over the geometric mean of its neighbours. A second one-shard copy is the
A/A. Writes JSON with the machine; docs/bench/*-shards-ab.json holds a run of it.

    python scripts/shards_ab.py --rounds 12 --out docs/bench/DATE-CPU-shards-ab.json
    python scripts/shards_ab.py --against 2 --shards 4     # two shard counts against each other

The keys keep their names whatever is compared: `sharded_over_one` is `--shards` over `--against`.
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

import numpy as np  # noqa: E402

from mnist_rnn.config import Config, DataConfig, ModelConfig, TrainConfig  # noqa: E402
from mnist_rnn.data import load_embedded  # noqa: E402
from mnist_rnn.execution import cpu_description, plan_execution  # noqa: E402
from mnist_rnn.loop import compile_model, fit_epoch  # noqa: E402
from mnist_rnn.measure import neighbour_ratio, summarise  # noqa: E402
from mnist_rnn.mnist import LAYOUT_SHAPES  # noqa: E402
from mnist_rnn.model import build_model  # noqa: E402

BATCH = 128
CASES = {  # name: (cell, units, layout, batches per slice)
    "lstm1x128-rows": ("lstm", (128,), "rows", 32),
    "lstm2x128-rows": ("lstm", (128, 128), "rows", 24),
    "gru2x128-rows": ("gru", (128, 128), "rows", 24),
    "lstm1x128-pixels": ("lstm", (128,), "pixels", 2),
}


def _trainer(case: str, shards: int | None) -> tuple[Any, str]:
    cell, units, layout, _ = CASES[case]
    train = TrainConfig(clipnorm=None, learning_rate=1e-3, batch_size=BATCH, batch_shards=shards)
    cfg = Config(data=DataConfig(layout=layout), model=ModelConfig(cell=cell, units=units), train=train)
    execution = plan_execution(cfg, "/CPU:0")
    model = build_model(cfg.model, LAYOUT_SHAPES[layout], fused=execution.fused, shards=execution.shards)
    compile_model(model, cfg.train, execution.xla)
    return model, execution.describe()


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
    half = n // 2
    for model, _ in variants.values():
        fit_epoch(model, x[:half], y[:half], BATCH, "/CPU:0")  # compile both shapes' worth: warm-up
    turn = 0

    def rate(name: str) -> float:
        nonlocal turn
        lo = (turn % 2) * half
        turn += 1
        start = time.perf_counter()
        fit_epoch(variants[name][0], x[lo : lo + half], y[lo : lo + half], BATCH, "/CPU:0")
        return half / (time.perf_counter() - start)

    pairs: dict[str, list[float]] = {"sharded": [], "one_aa": []}
    before = rate("one")
    for r in range(rounds):
        for name in ("sharded", "one_aa") if r % 2 == 0 else ("one_aa", "sharded"):
            other = rate(name)
            after = rate("one")
            pairs[name].append(1.0 / neighbour_ratio(before, other, after))  # variant over one shard
            before = after
    return {
        "case": case,
        "shards": shards,
        "against": against,
        "paths": {name: describe for name, (_, describe) in variants.items()},
        "sharded_over_one": summarise(pairs["sharded"]),
        "aa_over_one": summarise(pairs["one_aa"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--out", type=Path, default=Path("shards-ab.json"))
    parser.add_argument("--shards", type=int, default=None, help="the variant's shards [default: auto]")
    parser.add_argument("--against", type=int, default=1, help="the baseline's shards [default: 1]")
    args = parser.parse_args()
    import tensorflow as tf

    results = []
    for case in args.cases:
        results.append(measure(case, args.rounds, args.shards, args.against))
        print(json.dumps(results[-1]), flush=True)
    machine = {"cpu": cpu_description(), "cpus": os.cpu_count(), "tensorflow": tf.__version__}
    args.out.write_text(json.dumps({"machine": machine, "rounds": args.rounds, "results": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
