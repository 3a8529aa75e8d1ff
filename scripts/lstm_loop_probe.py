"""Forward-pass time of one LSTM stack, Keras's layer under XLA against the fused LSTM's form for the length
(unrolled up to `fused_lstm.UNROLL_MAX_STEPS` steps, a loop over chunks of unrolled steps beyond), on one
core: where `execution.scoring_fused` comes from (docs/performance.md, "Scoring long sequences").

Both take the same weights and give the same outputs to float32 rounding (checked before timing). Calls
alternate, `--rounds` of each; the ratio of a round is Keras's time over the fused one's, and the summary
is the median with a bootstrap 90% interval (mnist_rnn/measure.py). One core (intra- and inter-op threads
1), so the comparison is of the loop, not of how the two use the second core.

    python scripts/lstm_loop_probe.py --layout pixels --layers 1 --batch 500 --rounds 8
    python scripts/lstm_loop_probe.py --layout rows --layers 2 --batch 500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args()

    shape = LAYOUT_SHAPES[args.layout]
    cfg = ModelConfig(units=(128,) * args.layers)
    keras_model = build_model(cfg, shape)
    fused_model = build_model(cfg, shape, fused=True)
    fused_model.set_weights(keras_model.get_weights())
    calls = {
        name: tf.function(lambda x, m=model: m(x, training=False), jit_compile=True)
        for name, model in (("keras", keras_model), ("fused", fused_model))
    }
    x = tf.constant(np.random.default_rng(0).random((args.batch, *shape), dtype=np.float32))
    difference = float(np.abs(calls["keras"](x).numpy() - calls["fused"](x).numpy()).max())  # also compiles
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call(x).numpy()
            seconds[name].append(time.perf_counter() - start)
    ratios = [k / f for k, f in zip(seconds["keras"], seconds["fused"], strict=True)]
    result = {
        "machine": {"cpu": cpu_description(), "tensorflow": tf.__version__, "threads": 1},
        "layout": args.layout,
        "layers": args.layers,
        "batch": args.batch,
        "max_probability_difference": difference,
        "samples_per_second": {name: args.batch / min(s) for name, s in seconds.items()},
        "fused_over_keras": summarise(ratios),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
