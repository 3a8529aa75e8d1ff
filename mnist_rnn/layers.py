"""mnist-rnn's own Keras 3 objects, registered as serialisable under the package name `mnist_rnn`.

- `JANETCell`: the forget-gate-only LSTM ("JANET", van der Westhuizen & Lasenby 2018, "The unreasonable
  effectiveness of the forget gate"), a cell for `keras.layers.RNN`, so stacking, `Bidirectional`,
  `stateful`, `unroll` and masking are Keras's own:

      s_t  = W_f x_t + U_f h_{t-1} + b_f
      c~_t = tanh(W_c x_t + U_c h_{t-1} + b_c)
      c_t  = sigmoid(s_t) * c_{t-1} + (1 - sigmoid(s_t - beta)) * c~_t,      h_t = c_t,  beta = 1

  Weights: `kernel` (features, 2u), `recurrent_kernel` (u, 2u), `bias` (2u,), each in the order
  [forget, candidate]. The bias starts as [1, 0] (unit forget bias); `model.build_model` overwrites the
  forget half for chrono initialisation.
- `PermuteSteps`: reorders the time axis by a fixed permutation (a gather), the input step of permuted
  pixel MNIST inside an exported model, so a server feeds plain pixels.

- `ReplicaSafeAdam`: Adam whose gradient clipping sees the global batch's gradient under a `tf.distribute`
  strategy (what training uses with `train.strategy: mirrored`).

A `.keras` file holding any of them loads where `mnist_rnn.layers` has been imported (the registration
happens at import; `keras.saving.load_model` then needs no `custom_objects`). SavedModel, TFLite and ONNX
artefacts are graphs of TensorFlow ops and need none of this code.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

JANET_BETA = 1.0  # the paper's shift: the input gate is slightly more closed than 1 - forget gate


@keras.saving.register_keras_serializable(package="mnist_rnn")
class JANETCell(keras.layers.Layer):
    """One step of JANET: state and output are the cell `c` (units,)."""

    def __init__(self, units: int, beta: float = JANET_BETA, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.beta = beta
        self.state_size = units
        self.output_size = units

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        features, u = int(input_shape[-1]), self.units  # type: ignore[arg-type]
        self.kernel = self.add_weight(shape=(features, 2 * u), initializer="glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(u, 2 * u), initializer="orthogonal", name="recurrent_kernel"
        )
        self.bias = self.add_weight(shape=(2 * u,), initializer=_unit_forget_bias, name="bias")

    def call(self, inputs: Any, states: Any, training: bool = False) -> tuple[Any, list[Any]]:
        c_prev = states[0] if isinstance(states, list | tuple) else states
        z = ops.matmul(inputs, self.kernel) + ops.matmul(c_prev, self.recurrent_kernel) + self.bias
        s, candidate = z[:, : self.units], z[:, self.units :]
        c = ops.sigmoid(s) * c_prev + (1.0 - ops.sigmoid(s - self.beta)) * ops.tanh(candidate)
        return c, [c]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "beta": self.beta}


def _unit_forget_bias(shape: tuple[int, ...], dtype: Any = None) -> Any:
    half = shape[0] // 2
    return ops.concatenate([ops.ones((half,), dtype=dtype), ops.zeros((half,), dtype=dtype)])


def janet(units: int, *, return_sequences: bool, stateful: bool, unroll: bool, name: str) -> keras.layers.RNN:
    """A JANET layer: Keras's RNN over `JANETCell` (what `model.cell: janet` builds)."""
    return keras.layers.RNN(
        JANETCell(units), return_sequences=return_sequences, stateful=stateful, unroll=unroll, name=name
    )


@keras.saving.register_keras_serializable(package="mnist_rnn")
class PermuteSteps(keras.layers.Layer):
    """(batch, steps, features) -> the same with step t taken from step `order[t]`: `take` along axis 1.

    The order is a constant of the graph (a Gather op in SavedModel, TFLite and ONNX), not a weight.
    """

    def __init__(self, order: list[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.order = [int(i) for i in order]

    def call(self, inputs: Any) -> Any:
        return ops.take(inputs, ops.convert_to_tensor(self.order, dtype="int32"), axis=1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "order": self.order}


@keras.saving.register_keras_serializable(package="mnist_rnn")
class ReplicaSafeAdam(keras.optimizers.Adam):
    """Adam that clips the gradient of the global batch, not each replica's share of it.

    Under a strategy Keras clips each replica's gradient (`clipnorm`) and only then sums them across
    replicas (tensorflow#33929 describes the trap), so clipping acts on partial gradients and a mirrored run
    trains differently from one device with the same global batch. Here clipping waits for the sum: the
    update is then the single-device one (the tests compare the two to 1e-5). Without replicas it is Adam.
    """

    def _clip_gradients(self, grads: list[Any]) -> list[Any]:
        import tensorflow as tf

        if tf.distribute.get_replica_context() is not None and tf.distribute.has_strategy():
            return grads  # clipped after the all-reduce, below
        return super()._clip_gradients(grads)

    def _all_reduce_sum_gradients(self, grads_and_vars: Any) -> Any:
        import tensorflow as tf

        reduced = list(super()._all_reduce_sum_gradients(grads_and_vars))
        if tf.distribute.get_replica_context() is None or not tf.distribute.has_strategy():
            return reduced
        clipped = super()._clip_gradients([g for g, _ in reduced])
        return list(zip(clipped, [v for _, v in reduced], strict=True))
