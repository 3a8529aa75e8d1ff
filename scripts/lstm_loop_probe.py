"""One LSTM stack on one core, Keras's layer under XLA against the fused LSTM's form for the length
(unrolled up to `fused_lstm.UNROLL_MAX_STEPS` steps, a loop over chunks of unrolled steps beyond): the
forward pass (where `execution.scoring_fused` comes from: docs/performance.md, "Scoring long sequences"),
or with `--train` a training step's forward and backward pass (loss and gradients, no update: where the
fused LSTM's training on long sequences comes from, "Pixels: the fused LSTM trains long sequences").

Both take the same weights and give the same outputs (and gradients) to float32 rounding (checked before
timing). Calls alternate, `--rounds` of each, in an order that turns round every round; a round's ratio is
Keras's time over the fused one's, the A/A control is the fused one against a second compile of itself,
and each is summarised as the median with a bootstrap 90% interval (mnist_rnn/measure.py). One core
(intra- and inter-op threads 1), so the comparison is of the loop, not of how the two use the second core.

    python scripts/lstm_loop_probe.py --layout pixels --layers 1 --batch 500 --rounds 8
    python scripts/lstm_loop_probe.py --layout rows --layers 2 --batch 500
    python scripts/lstm_loop_probe.py --train --layout pixels --layers 2 --batch 64 --rounds 8
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

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

from mnist_rnn.config import ModelConfig  # noqa: E402
from mnist_rnn.execution import cpu_description  # noqa: E402
from mnist_rnn.measure import summarise  # noqa: E402
from mnist_rnn.mnist import LAYOUT_SHAPES  # noqa: E402
from mnist_rnn.model import build_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", default="pixels", choices=sorted(LAYOUT_SHAPES))
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--train", action="store_true", help="a training step (loss, gradients), not scoring")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args()

    shape = LAYOUT_SHAPES[args.layout]
    cfg = ModelConfig(units=(128,) * args.layers)
    keras_model = build_model(cfg, shape)
    fused_model = build_model(cfg, shape, fused=True)
    fused_model.set_weights(keras_model.get_weights())
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((args.batch, *shape), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, args.batch))
    loss = keras.losses.SparseCategoricalCrossentropy()

    def compiled(model: keras.Model) -> Any:
        if not args.train:
            return tf.function(lambda: model(x, training=False), jit_compile=True)

        def step() -> Any:
            with tf.GradientTape() as tape:
                value = loss(y, model(x, training=True))
            return [value, *tape.gradient(value, model.trainable_variables)]

        return tf.function(step, jit_compile=True)

    calls = {
        "keras": compiled(keras_model),
        "fused": compiled(fused_model),
        "fused_aa": compiled(fused_model),
    }
    outputs = {name: tf.nest.flatten(call()) for name, call in calls.items()}  # (also compiles)
    difference = max(
        float(np.abs(a.numpy() - b.numpy()).max())
        for a, b in zip(outputs["keras"], outputs["fused"], strict=True)
    )
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(args.rounds):
        for name in names[r % 3 :] + names[: r % 3]:
            start = time.perf_counter()
            tf.nest.flatten(calls[name]())[0].numpy()
            seconds[name].append(time.perf_counter() - start)
    ratios = [k / f for k, f in zip(seconds["keras"], seconds["fused"], strict=True)]
    control = [a / f for a, f in zip(seconds["fused_aa"], seconds["fused"], strict=True)]
    result = {
        "machine": {"cpu": cpu_description(), "tensorflow": tf.__version__, "threads": 1},
        "what": "training step (loss and gradients)" if args.train else "scoring (forward pass)",
        "layout": args.layout,
        "layers": args.layers,
        "batch": args.batch,
        "max_difference": difference,  # outputs, or loss and gradients with --train
        "samples_per_second": {name: args.batch / min(s) for name, s in seconds.items()},
        "fused_over_keras": summarise(ratios),
        "aa": summarise(control),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
