"""Scoring (`evaluate.Scorer`), this tree's against another commit's, and both against Keras's own predict.

    python scripts/scoring_ab.py --base 56f964c [--cases gru2x128-rows ...] [--rounds 12] [--out PATH.json]
    python scripts/scoring_ab.py --base 56f964c --cases lstm1x128-pixels --images 2000   # two whole batches

The base commit's `mnist_rnn/evaluate.py` is read from git and loaded beside this tree's; both score the
same model (seed 0's weights) on the same test images, with the shards that `mnist-rnn eval` would plan for
the case (`execution.scoring_shards`), and their probabilities are compared first. A third variant is the
case's plain Keras model compiled as the bench's tuned Keras is (`jit_compile=True`, 32 steps per call) and
read through `trained.keras_predict`. Then paired slices as in scripts/shards_ab.py: base, other, base, ...
(the others rotated each round), each other's rate over its neighbours'; a second copy of the base is the
A/A. Writes JSON with the machine (CPU kind).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench  # noqa: E402  (the cases' plain Keras model)
import numpy as np  # noqa: E402
import shards_ab  # noqa: E402  (the pairing and the JSON)
from kernel_ab import base_module  # noqa: E402

from mnist_rnn.config import Config, DataConfig, ModelConfig  # noqa: E402
from mnist_rnn.data import load_embedded  # noqa: E402
from mnist_rnn.evaluate import Scorer  # noqa: E402
from mnist_rnn.execution import scoring_shards  # noqa: E402
from mnist_rnn.measure import summarise  # noqa: E402
from mnist_rnn.mnist import LAYOUT_SHAPES  # noqa: E402
from mnist_rnn.model import build_model  # noqa: E402
from mnist_rnn.trained import keras_predict  # noqa: E402

SCORED = {"rows": 4096, "pixels": 1000}  # images per slice: the bench's rows; a pixel validation batch


def tuned_keras(case: str, weights: list[np.ndarray]) -> Any:
    """The case as a plain Keras script writes it (bench.keras_sequential), compiled as tuned Keras."""
    bench_case = next(c for c in bench.cases() if c.name == case)
    model = bench.keras_sequential(bench_case, LAYOUT_SHAPES[bench_case.layout])
    model.compile(loss="sparse_categorical_crossentropy", jit_compile=True, steps_per_execution=32)
    model.set_weights(weights)
    return model


def measure(case: str, rounds: int, base: types.ModuleType, images: int | None = None) -> dict[str, Any]:
    cell, units, layout, _ = shards_ab.CASES[case]
    cfg = Config(data=DataConfig(layout=layout), model=ModelConfig(cell=cell, units=units))
    x = load_embedded()["test_images"][: images or SCORED[layout]].astype(np.float32) / 255
    x = x.reshape(-1, *LAYOUT_SHAPES[layout])
    model = build_model(cfg.model, LAYOUT_SHAPES[layout])
    shards = scoring_shards(cfg, True)
    keras_model = tuned_keras(case, model.get_weights())
    calls = {
        "base": base.Scorer(cfg, True, shards),
        "this": Scorer(cfg, True, shards),
        "keras": lambda m, images: keras_predict(keras_model, images, cfg.train.eval_batch_size),
        "base_aa": base.Scorer(cfg, True, shards),
    }
    outputs = {name: call(model, x) for name, call in calls.items()}  # compiles: warm-up
    differences = {name: float(np.abs(out - outputs["base"]).max()) for name, out in outputs.items()}

    def rate(name: str) -> float:
        start = time.perf_counter()
        calls[name](model, x)
        return len(x) / (time.perf_counter() - start)

    pairs = shards_ab.paired(rate, rounds, "base", ["this", "keras", "base_aa"])
    return {
        "case": case,
        "images": len(x),
        "shards": shards,
        "max_probability_difference_from_base": differences,
        "this_over_base": summarise(pairs["this"]),
        "keras_over_base": summarise(pairs["keras"]),
        # each round: this over base, over keras over base (its neighbours in the same round)
        "this_over_keras": summarise([t / k for t, k in zip(pairs["this"], pairs["keras"], strict=True)]),
        "aa_over_base": summarise(pairs["base_aa"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="a commit whose evaluate.py is the baseline")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--cases", nargs="*", default=list(shards_ab.CASES))
    parser.add_argument("--images", type=int, help="images per slice [default: 4,096 rows, 1,000 pixels]")
    parser.add_argument("--out", type=Path, default=Path("scoring-ab.json"))
    args = parser.parse_args()

    base = base_module(args.base, "mnist_rnn/evaluate.py")
    results = []
    for case in args.cases:
        results.append(measure(case, args.rounds, base, args.images))
        print(json.dumps(results[-1]), flush=True)
    shards_ab.write_results(args.out, args.rounds, [{"base": args.base, **r} for r in results])


if __name__ == "__main__":
    main()
