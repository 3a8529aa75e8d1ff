"""A training step that keeps every CPU core busy: the batch in shards, each shard's forward and backward
pass one XLA computation, the shards run side by side, their gradients summed before one Adam update.

Why (docs/performance.md, "Both cores"): an XLA-compiled training step of a small recurrent model runs its
ops one after another on one core; the second core only helps inside the few matmuls large enough for
Eigen to split, and single-threaded matmuls were measured no slower. PyTorch's step kept both cores busy
and won by 1.4-1.7x. Here the outer step is a plain TensorFlow graph, whose executor runs independent ops
on its inter-op threads at once, and each shard's gradient is one call of the same XLA function: the
shards run concurrently, one per core, with the weights passed in as values (`stateless_call`), so no
resource ordering serialises them.

The result is the full batch's step: the loss is each sample's loss summed over all shards and divided
by the whole batch's size (Keras's `sum_over_batch_size`), and the gradients add up to the whole batch's
gradient, up to the order of float32 sums. A rerun with the same shards is bit-identical; another shard
count differs in the last digits, so the run plan records it and a checkpoint keeps it (`get_config`).

Dropout draws from seed-generator states (the model's only non-trainable variables): each shard offsets
its copy's seed by its index so the shards draw different masks, and the states advance once per step.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

_SEED_STATE = "seed_generator_state"


@keras.saving.register_keras_serializable(package="mnist_rnn")
class ShardedModel(keras.Model):
    """A functional model whose `fit` step runs the batch as `shards` concurrent XLA computations.

    Compile it with `jit_compile=False` (the outer step must stay a plain graph); the shards are compiled.
    Prediction and evaluation are Keras's own. Built by `model.build_model(..., shards=k)`."""

    def __init__(self, *args: Any, shards: int = 2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shards = shards
        self._shard_step: Any = None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "shards": self.shards}

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        n = tf.shape(x)[0]
        weights = tf.ones_like(y, tf.float32) if sample_weight is None else tf.cast(sample_weight, tf.float32)
        base = n // self.shards
        sizes = tf.stack([base] * (self.shards - 1) + [n - base * (self.shards - 1)])
        trainable = [v.value for v in self.trainable_variables]
        others = self.non_trainable_variables
        if any(not v.path.endswith(_SEED_STATE) for v in others):  # the builder makes no other kind
            raise TypeError(f"ShardedModel can only carry seed states, not {[v.path for v in others]}")
        step = self._compiled_shard_step()
        results = [
            step(trainable, [v.value + [index, 0] for v in others], xs, ys, ws, tf.cast(n, tf.float32))
            for index, (xs, ys, ws) in enumerate(
                zip(*(tf.split(part, sizes, num=self.shards) for part in (x, y, weights)), strict=True)
            )
        ]
        losses, gradients, predictions, new_states = zip(*results, strict=True)
        for variable, value in zip(others, new_states[0], strict=True):  # shard 0's: offset 0
            variable.assign(value)
        loss = tf.add_n(list(losses))
        self._loss_tracker.update_state(loss, sample_weight=n)
        summed = [tf.add_n(list(parts)) for parts in zip(*gradients, strict=True)]
        self.optimizer.apply(summed, self.trainable_variables)
        return self.compute_metrics(x, y, tf.concat(predictions, 0), sample_weight=sample_weight)

    def _compiled_shard_step(self) -> Any:
        if self._shard_step is None:
            loss_fn = keras.losses.get(self.loss)  # elementwise: the compiled loss by name

            @tf.function(jit_compile=True, reduce_retracing=True)
            def shard_step(trainable: list, others: list, x: Any, y: Any, w: Any, total: Any) -> Any:
                with tf.GradientTape() as tape:
                    tape.watch(trainable)
                    predictions, new_others = self.stateless_call(trainable, others, x, training=True)
                    loss = tf.reduce_sum(loss_fn(y, predictions) * w) / total
                return loss, tape.gradient(loss, trainable), predictions, new_others

            self._shard_step = shard_step
        return self._shard_step
