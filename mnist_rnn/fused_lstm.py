"""A CPU-fast LSTM for short sequences: the same function and weights as `keras.layers.LSTM`, fewer ops.

Why it exists (docs/performance.md has the profile): on a small CPU, Keras's LSTM spends its time in
per-step overhead, not arithmetic. Each of the 28 row steps runs two matmuls, a split, three sigmoids,
two tanhs and the gate products, and autodiff adds about twice as many ops per step plus three more
matmuls (input, recurrent and weight gradients) and a Concat that undoes the split. This layer:

- hoists the input projection out of the loop: one (batch*steps, features) x (features, 4*units) matmul;
- computes all four gates with one sigmoid, using tanh(z) = 2*sigmoid(2z) - 1 for the candidate gate;
- unrolls the loop in Python (the sequence length is static and short), so XLA fuses each step's
  elementwise work into one kernel;
- has a hand-written backward pass (`tf.custom_gradient`): the per-step part is one matmul and a few
  elementwise products; the weight, bias and input gradients are computed once over all steps as a few
  large matmuls. The per-step factors the backward pass needs (the gate derivatives) are computed in the
  forward step, where its fusion already holds the gates: computed afterwards over all steps they cost a
  stack, a concat and passes over (steps, batch, 4u) tensors (the same numbers, bit for bit, either way;
  docs/performance.md, "The fused LSTM's step on one core", has the measurement).

Weights are `kernel` (features, 4u), `recurrent_kernel` (u, 4u) and `bias` (4u,) in Keras's gate order
(input, forget, candidate, output), with Keras's initializers, so `set_weights` moves them to and from
`keras.layers.LSTM` unchanged: exports and the stateful/serving twins keep using the stock layer.
Float32, stateless, unidirectional, no recurrent dropout, no masking: `model.lstm_kernel` refuses the rest.

Longer sequences (pixels: 784 steps) cannot be unrolled; for them the layer runs a loop over chunks of
up to 16 unrolled steps, forward only (`_scan_sequence`). Scoring uses it (`execution.scoring_fused`):
Keras's LSTM under XLA spends most of a pixel step outside the matmul. Training on them keeps Keras's
layers: a backward loop of the same shape measured slower than Keras's own under XLA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla  # optimization_barrier: not in the public API
from tensorflow.python.ops import control_flow_util

# Longer sequences (pixels: 784) cannot be unrolled into the graph: a loop over chunks instead. The same
# number as `execution.FUSED_MAX_STEPS` (which cannot import this module: it would load TensorFlow).
UNROLL_MAX_STEPS = 128
SCAN_CHUNK = 16  # steps unrolled per loop iteration: the largest divisor of the length up to this


@dataclass(frozen=True)
class _Gates:
    """Gates (i, f, g, o): a = sigmoid(z * scale) * scale + shift gives sigmoid for i, f, o and tanh for g."""

    scale: tf.Tensor
    shift: tf.Tensor
    slope: tf.Tensor  # d a / d z = s * (1 - s) * scale^2, with s the sigmoid output

    @classmethod
    def of(cls, units: int) -> _Gates:
        ones, zeros = tf.ones((units,)), tf.zeros((units,))
        scale = tf.concat([ones, ones, 2.0 * ones, ones], 0)
        return cls(scale, tf.concat([zeros, zeros, -ones, zeros], 0), scale * scale)


@dataclass(frozen=True)
class _Tape:
    """What the forward pass keeps for the backward pass."""

    x_flat: tf.Tensor  # (steps*batch, features), step-major
    partner: list[tf.Tensor]  # per step, (batch, 4u): d z = [dc, dc, dc, dh] * partner
    dc_from_h: list[tf.Tensor]  # per step, (batch, u): dc = dh * dc_from_h + (dc of the next step)
    forget: list[tf.Tensor]  # per step, (batch, u): the forget gate, which carries dc one step back
    hs: tf.Tensor  # (steps, batch, u)
    batch: tf.Tensor


def lstm_sequence(
    x: tf.Tensor, kernel: tf.Tensor, recurrent_kernel: tf.Tensor, bias: tf.Tensor, return_sequences: bool
) -> tf.Tensor:
    """LSTM over x (batch, steps, features) from zero state: the last h (batch, u) or every h
    (batch, steps, u). Equal to `keras.layers.LSTM` with the same weights up to float32 rounding."""
    if int(x.shape[1]) > UNROLL_MAX_STEPS:  # a loop over chunks instead (forward only)
        return _scan_sequence(x, kernel, recurrent_kernel, bias, return_sequences)
    gates = _Gates.of(int(recurrent_kernel.shape[0]))

    @tf.custom_gradient
    def run(x: tf.Tensor, w: tf.Tensor, u: tf.Tensor, b: tf.Tensor) -> Any:
        out, tape = _forward(x, w, u, b, gates, return_sequences)
        return out, lambda d_out: _backward(d_out, tape, w, u, return_sequences)

    return run(x, kernel, recurrent_kernel, bias)


def _forward(
    x: tf.Tensor, w: tf.Tensor, u: tf.Tensor, b: tf.Tensor, gates: _Gates, return_sequences: bool
) -> tuple[tf.Tensor, _Tape]:
    steps, features, units = int(x.shape[1]), int(x.shape[2]), int(u.shape[0])
    batch = tf.shape(x)[0]
    x_flat = tf.reshape(tf.transpose(x, [1, 0, 2]), [-1, features])  # (steps*batch, features)
    inputs = tf.unstack(tf.reshape(tf.matmul(x_flat, w) + b, [steps, batch, 4 * units]))
    partner: list[tf.Tensor] = []
    dc_from_h: list[tf.Tensor] = []
    forget: list[tf.Tensor] = []
    hidden: list[tf.Tensor] = []
    h = c = None
    for t in range(steps):
        z = inputs[t] if h is None else inputs[t] + tf.matmul(h, u)  # h0 = 0: skip its matmul
        s = tf.sigmoid(z * gates.scale)
        i, f, g, o = tf.split(s * gates.scale + gates.shift, 4, axis=1)
        c_prev = tf.zeros_like(g) if c is None else c
        c = i * g if c is None else f * c + i * g
        tanh_c = tf.tanh(c)
        h = o * tanh_c
        hidden.append(h)
        # What the backward step needs, here where XLA's fusion of this step already holds the gates (the
        # caller's gradient uses it; without one, XLA and Grappler drop it as dead code):
        # dz = [dc*g, dc*c_prev, dc*i, dh*tanh(c)] * a'(z), and dc = dh * o * tanh'(c) + dc_next.
        partner.append(tf.concat([g, c_prev, i, tanh_c], 1) * ((s - s * s) * gates.slope))
        dc_from_h.append(o * (1.0 - tanh_c * tanh_c))
        forget.append(f)
    hs = tf.stack(hidden)  # (steps, batch, u)
    out = tf.transpose(hs, [1, 0, 2]) if return_sequences else h
    return out, _Tape(x_flat, partner, dc_from_h, forget, hs, batch)


def _backward(
    d_out: tf.Tensor, tape: _Tape, w: tf.Tensor, u: tf.Tensor, return_sequences: bool
) -> tuple[tf.Tensor, ...]:
    """Gradients for (x, kernel, recurrent_kernel, bias)."""
    steps, features, units = len(tape.partner), int(w.shape[0]), int(u.shape[0])
    d_hs = tf.unstack(tf.transpose(d_out, [1, 0, 2])) if return_sequences else None
    u_t = _materialised(tf.transpose(u))
    dz: list[tf.Tensor] = [tf.zeros(())] * steps
    dh = None if return_sequences else d_out
    dc = None
    for t in reversed(range(steps)):  # the only sequential part: one matmul per step
        if d_hs is not None:
            dh = d_hs[t] if dh is None else dh + d_hs[t]
        dct = dh * tape.dc_from_h[t] if dc is None else dh * tape.dc_from_h[t] + dc
        dz[t] = tf.concat([dct, dct, dct, dh], 1) * tape.partner[t]
        if t > 0:
            dh = tf.matmul(dz[t], u_t)
            dc = dct * tape.forget[t]
    dz_flat = tf.reshape(tf.stack(dz), [-1, 4 * units])  # (steps*batch, 4u)
    hs = tape.hs
    h_prev = tf.reshape(tf.concat([tf.zeros_like(hs[:1]), hs[:-1]], 0), [-1, units])
    dx = tf.reshape(tf.matmul(dz_flat, w, transpose_b=True), [steps, tape.batch, features])
    return (
        tf.transpose(dx, [1, 0, 2]),
        tf.matmul(tape.x_flat, dz_flat, transpose_a=True),
        tf.matmul(h_prev, dz_flat, transpose_a=True),
        tf.reduce_sum(dz_flat, 0),
    )


def _materialised(t: tf.Tensor) -> tf.Tensor:
    """`t` as a buffer of its own under XLA. Left alone, XLA folds a transpose into the dot that reads it,
    and XLA:CPU's dot kernel then transposes that operand on every call: in the backward loop, the (4u, u)
    recurrent weight once per step (measured with the change above: docs/performance.md, "The fused
    LSTM's step on one core"). Outside XLA (eager, plain graphs) it is left out: there the transpose is
    an op of its own, run once, and the barrier would be one more op to dispatch."""
    if control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()):
        return xla.optimization_barrier(t)[0]
    return t


def _chunk(steps: int) -> int:
    return max(k for k in range(1, SCAN_CHUNK + 1) if steps % k == 0)


def _scan_sequence(
    x: tf.Tensor, w: tf.Tensor, u: tf.Tensor, b: tf.Tensor, return_sequences: bool
) -> tf.Tensor:
    """The same LSTM for long sequences, forward only: a loop over chunks of k = `_chunk(steps)` unrolled
    steps (`tf.scan`), so the graph stays small and XLA still fuses each step's elementwise work. Each
    chunk projects its own inputs: hoisted over all steps, z would be a (steps, batch, 4u) buffer (800 MB
    for a scoring shard of 500 pixel sequences), and the in-loop projection measured 1.1x faster.
    Scoring runs it (`execution.scoring_fused`); training on long sequences keeps Keras's layers: a backward
    loop of the same shape, weight gradients summed per chunk, trained pixels at 0.85x Keras's XLA step."""
    steps, features, units = int(x.shape[1]), int(x.shape[2]), int(u.shape[0])
    k, batch, gates = _chunk(steps), tf.shape(x)[0], _Gates.of(units)

    def chunk(carry: tuple[tf.Tensor, tf.Tensor], x_k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        h, c = carry[0][-1] if return_sequences else carry[0], carry[1]  # the previous chunk's last
        z = tf.reshape(tf.matmul(tf.reshape(x_k, [-1, features]), w) + b, [k, batch, 4 * units])
        hidden = []
        for j in range(k):
            s = tf.sigmoid((z[j] + tf.matmul(h, u)) * gates.scale)
            i, f, g, o = tf.split(s * gates.scale + gates.shift, 4, axis=1)
            c = f * c + i * g
            h = o * tf.tanh(c)
            hidden.append(h)
        return (tf.stack(hidden) if return_sequences else h), c

    chunks = tf.reshape(tf.transpose(x, [1, 0, 2]), [steps // k, k, batch, features])
    h0 = tf.zeros([k, batch, units] if return_sequences else [batch, units])
    hs = tf.scan(chunk, chunks, initializer=(h0, tf.zeros([batch, units])))[0]
    if not return_sequences:
        return hs[-1]  # the last chunk's last h
    return tf.transpose(tf.reshape(hs, [steps, batch, units]), [1, 0, 2])


def _unit_forget_bias(units: int) -> keras.initializers.Initializer:
    """Keras LSTM's bias initializer: zeros, with ones for the forget gate."""

    class UnitForgetBias(keras.initializers.Initializer):
        def __call__(self, shape: Any, dtype: Any = None) -> Any:
            return tf.concat([tf.zeros((units,)), tf.ones((units,)), tf.zeros((2 * units,))], 0)

    return UnitForgetBias()


@keras.saving.register_keras_serializable(package="mnist_rnn")
class FusedLSTM(keras.layers.Layer):
    """Drop-in for `keras.layers.LSTM(units, return_sequences=...)` on CPU; see the module docstring."""

    def __init__(self, units: int, return_sequences: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.return_sequences = return_sequences

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        steps, features = input_shape[1], input_shape[2]
        if steps is None:  # the loop is unrolled in the graph (how long is too long: execution.py)
            raise ValueError("FusedLSTM needs a static sequence length")
        u = self.units
        self.kernel = self.add_weight(shape=(features, 4 * u), initializer="glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(u, 4 * u), initializer="orthogonal", name="recurrent_kernel"
        )
        self.bias = self.add_weight(shape=(4 * u,), initializer=_unit_forget_bias(u), name="bias")

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return lstm_sequence(
            inputs,
            tf.convert_to_tensor(self.kernel),
            tf.convert_to_tensor(self.recurrent_kernel),
            tf.convert_to_tensor(self.bias),
            self.return_sequences,
        )

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        if self.return_sequences:
            return (input_shape[0], input_shape[1], self.units)
        return (input_shape[0], self.units)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "return_sequences": self.return_sequences}
