"""TensorFlow's whole-sequence LSTM op (`BlockLSTM`) against the path `mnist-rnn train` picks, in one process.

A lead of issue #21: BlockLSTM runs all steps of the forward pass in one op and its gradient in another,
with the matmuls on TensorFlow's intra-op threads (both cores) and no XLA (the op has no XLA kernel).
The variants, each the same model (`model.build_model` with the LSTM layers swapped) trained by
`loop.fit_epoch` with Adam in slices as scripts/shards_ab.py does:

- `ours`: the path `execution.plan_execution` picks (the fused LSTM under XLA, shards where it pays);
- `ours_aa`: a second copy of it, the A/A;
- `block`: `BlockLSTM` in a plain graph;
- `fused_plain`: our fused LSTM in a plain graph (XLA off), the same op count without XLA's fusion.

Each other slice is paired with `ours`'s slices either side (mnist_rnn/measure.py). Writes JSON with the
machine; docs/bench/*-block-lstm.json holds a run of it.

    python scripts/block_lstm_probe.py --rounds 8 --out docs/bench/DATE-CPU-block-lstm.json

TensorFlow 2.21 registers V1's gradient for `BlockLSTMV2`, whose gates are in Keras's order (i, f, c, o)
while V1's are (i, c, f, o): its gradients come out wrong. So this takes V1 with the gates reordered.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # shards_ab: the same slices and pairing

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from shards_ab import paired, training_rate, write_results  # noqa: E402

import mnist_rnn.fused_lstm as fused_lstm  # noqa: E402
from mnist_rnn.config import Config, DataConfig, ModelConfig, TrainConfig  # noqa: E402
from mnist_rnn.data import load_embedded  # noqa: E402
from mnist_rnn.execution import plan_execution  # noqa: E402
from mnist_rnn.layouts import make_sequences  # noqa: E402
from mnist_rnn.loop import compile_model  # noqa: E402
from mnist_rnn.measure import summarise  # noqa: E402
from mnist_rnn.mnist import LAYOUT_SHAPES  # noqa: E402
from mnist_rnn.model import build_model  # noqa: E402

BATCH = 128
CASES = {  # name: (units, layout, batches per slice)
    "lstm1x128-rows": ((128,), "rows", 32),
    "lstm2x128-rows": ((128, 128), "rows", 24),
    "lstm1x128-pixels": ((128,), "pixels", 2),
}


def _icfo(t: tf.Tensor) -> tf.Tensor:
    """Keras's gate order (i, f, c, o) to BlockLSTM's (i, c, f, o), along the last axis."""
    i, f, c, o = tf.split(t, 4, axis=-1)
    return tf.concat([i, c, f, o], -1)


def block_lstm(
    x: tf.Tensor, kernel: tf.Tensor, recurrent: tf.Tensor, bias: tf.Tensor, sequences: bool
) -> Any:
    """Keras's LSTM (zero state, no peepholes, no clipping) over x (batch, steps, features) in one op."""
    units, batch = int(recurrent.shape[0]), tf.shape(x)[0]
    zeros, no_peephole = tf.zeros([batch, units]), tf.zeros([units])
    h = tf.raw_ops.BlockLSTM(
        seq_len_max=tf.constant(int(x.shape[1]), tf.int64),
        x=tf.transpose(x, [1, 0, 2]),
        cs_prev=zeros,
        h_prev=zeros,
        w=_icfo(tf.concat([kernel, recurrent], 0)),
        wci=no_peephole,
        wcf=no_peephole,
        wco=no_peephole,
        b=_icfo(bias),
        forget_bias=0.0,
        cell_clip=-1.0,
        use_peephole=False,
    )[6]
    return tf.transpose(h, [1, 0, 2]) if sequences else h[-1]


class BlockLSTMLayer(fused_lstm.FusedLSTM):
    """The fused layer's weights and initializers; the sequence in `BlockLSTM`."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        weights = (tf.convert_to_tensor(w) for w in (self.kernel, self.recurrent_kernel, self.bias))
        return block_lstm(inputs, *weights, self.return_sequences)


def _trainer(cfg: Config, variant: str) -> Any:
    shape = LAYOUT_SHAPES[cfg.data.layout]
    if variant in ("ours", "ours_aa"):
        execution = plan_execution(cfg, "/CPU:0")
        model = build_model(cfg.model, shape, fused=execution.fused, shards=execution.shards)
        compile_model(model, cfg.train, execution.xla)
        return model, execution.describe()
    layer = {"block": BlockLSTMLayer, "fused_plain": fused_lstm.FusedLSTM}[variant]
    original, fused_lstm.FusedLSTM = fused_lstm.FusedLSTM, layer  # what build_model's fused=True builds
    try:
        model = build_model(cfg.model, shape, fused=True)
    finally:
        fused_lstm.FusedLSTM = original
    compile_model(model, cfg.train, False)
    return model, f"{variant}, XLA off"


def check_gradients(cfg: Config) -> float:
    """Largest relative difference of BlockLSTM's gradients from Keras's LSTM's, same weights."""
    import keras

    shape = LAYOUT_SHAPES[cfg.data.layout]
    x = tf.constant(np.random.default_rng(0).random((16, *shape), dtype=np.float32))
    reference = keras.layers.LSTM(cfg.model.units[0])
    reference.build((None, *shape))
    differences = []
    with tf.GradientTape(persistent=True) as tape:
        ours = block_lstm(
            x, reference.cell.kernel, reference.cell.recurrent_kernel, reference.cell.bias, False
        )
        theirs = reference(x)
        weights = tf.sin(tf.range(tf.size(theirs), dtype=tf.float32))  # every output weighed differently
        losses = [tf.reduce_sum(tf.reshape(y, [-1]) * weights) for y in (ours, theirs)]
    for a, b in zip(*(tape.gradient(loss, reference.trainable_weights) for loss in losses), strict=True):
        differences.append(float(tf.reduce_max(tf.abs(a - b)) / tf.reduce_max(tf.abs(b))))
    return max(differences)


def measure(case: str, rounds: int) -> dict[str, Any]:
    units, layout, batches = CASES[case]
    train = TrainConfig(clipnorm=None, learning_rate=1e-3, batch_size=BATCH)
    cfg = Config(data=DataConfig(layout=layout), model=ModelConfig(units=units), train=train)
    arrays = load_embedded()
    n = 2 * batches * BATCH
    x = make_sequences(arrays["train_images"][:n], layout)
    y = arrays["train_labels"][:n].astype(np.int32)
    variants = {name: _trainer(cfg, name) for name in ("ours", "block", "fused_plain", "ours_aa")}
    rate = training_rate({name: model for name, (model, _) in variants.items()}, x, y)
    others = ["block", "fused_plain", "ours_aa"]
    pairs = paired(rate, rounds, "ours", others)  # each variant over ours
    return {
        "case": case,
        "paths": {name: describe for name, (_, describe) in variants.items()},
        "block_gradient_max_relative_difference": check_gradients(cfg),
        **{f"{name}_over_ours": summarise(pairs[name]) for name in others},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--out", type=Path, default=Path("block-lstm.json"))
    args = parser.parse_args()
    results = []
    for case in args.cases:
        results.append(measure(case, args.rounds))
        print(json.dumps(results[-1]), flush=True)
    write_results(args.out, args.rounds, results)


if __name__ == "__main__":
    main()
