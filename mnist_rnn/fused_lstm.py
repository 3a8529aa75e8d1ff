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
up to 16 unrolled steps (`_scan_sequence`), and in training a second loop over the chunks in reverse for
the backward pass (`_scan_backward`). Scoring uses the forward loop alone (`execution.scoring_fused`):
Keras's LSTM under XLA spends most of a pixel step outside the matmul. Products with a one-feature input
(pixels) are broadcasts, not dots (`_times`): XLA:CPU ran those dots as general matmuls, a sixth of a
pixel training step (docs/performance.md, "The fused LSTM trains pixels").
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
    x: tf.Tensor,
    kernel: tf.Tensor,
    recurrent_kernel: tf.Tensor,
    bias: tf.Tensor,
    return_sequences: bool,
    training: bool = True,
) -> tf.Tensor:
    """LSTM over x (batch, steps, features) from zero state: the last h (batch, u) or every h
    (batch, steps, u). Equal to `keras.layers.LSTM` with the same weights up to float32 rounding.
    `training` false: no gradient will be asked for (long sequences then skip what the backward needs)."""
    if int(x.shape[1]) > UNROLL_MAX_STEPS:  # a loop over chunks instead
        return _scan_sequence(x, kernel, recurrent_kernel, bias, return_sequences, training)
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
        h, c, factors = _cell(inputs[t] if h is None else inputs[t] + tf.matmul(h, u), c, gates)  # h0 = 0
        hidden.append(h)
        partner.append(factors[0])
        dc_from_h.append(factors[1])
        forget.append(factors[2])
    hs = tf.stack(hidden)  # (steps, batch, u)
    out = tf.transpose(hs, [1, 0, 2]) if return_sequences else h
    return out, _Tape(x_flat, partner, dc_from_h, forget, hs, batch)


def _cell(
    z: tf.Tensor, c: tf.Tensor | None, gates: _Gates
) -> tuple[tf.Tensor, tf.Tensor, tuple[tf.Tensor, ...]]:
    """One step from its pre-activations z (batch, 4u) and the previous cell (None: the zero state): h, c and
    what the backward step needs, computed here where XLA's fusion of the step already holds the gates (the
    caller's gradient uses them; without one, XLA and Grappler drop them as dead code):
    dz = [dc*g, dc*c_prev, dc*i, dh*tanh(c)] * a'(z) = [dc, dc, dc, dh] * partner, dc = dh * o * tanh'(c) +
    the next step's dc, which the forget gate carries one step back."""
    s = tf.sigmoid(z * gates.scale)
    i, f, g, o = tf.split(s * gates.scale + gates.shift, 4, axis=1)
    c_prev = tf.zeros_like(g) if c is None else c
    c = i * g if c is None else f * c + i * g
    tanh_c = tf.tanh(c)
    partner = tf.concat([g, c_prev, i, tanh_c], 1) * ((s - s * s) * gates.slope)
    return o * tanh_c, c, (partner, o * (1.0 - tanh_c * tanh_c), f)


def _back_step(
    dh: tf.Tensor, dc: tf.Tensor | None, partner: tf.Tensor, dc_from_h: tf.Tensor, forget: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """One backward step: the pre-activations' gradient dz (batch, 4u) and the cell gradient carried to the
    step before (dh for that step is dz times the transposed recurrent weight, the caller's matmul)."""
    dct = dh * dc_from_h if dc is None else dh * dc_from_h + dc
    return tf.concat([dct, dct, dct, dh], 1) * partner, dct * forget


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
        dz[t], dc_next = _back_step(dh, dc, tape.partner[t], tape.dc_from_h[t], tape.forget[t])
        if t > 0:
            dh, dc = tf.matmul(dz[t], u_t), dc_next
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


def _scan_sequence(
    x: tf.Tensor, w: tf.Tensor, u: tf.Tensor, b: tf.Tensor, return_sequences: bool, training: bool
) -> tf.Tensor:
    """The same LSTM for long sequences: a loop over chunks of k = `_chunk(steps)` unrolled steps
    (`tf.scan`), so the graph stays small and XLA still fuses each step's elementwise work. Each chunk
    projects its own inputs: hoisted over all steps, z would be a (steps, batch, 4u) buffer (800 MB for a
    scoring shard of 500 pixel sequences), and the in-loop projection measured 1.1x faster. Scoring
    (`training` false) runs the loop alone; training keeps the backward step's factors per chunk and runs
    a second loop over the chunks in reverse (`_scan_backward`)."""
    steps, features, units = int(x.shape[1]), int(x.shape[2]), int(u.shape[0])
    k, gates = _chunk(steps), _Gates.of(units)
    batch = tf.shape(x)[0]
    chunks = tf.reshape(tf.transpose(x, [1, 0, 2]), [steps // k, k, batch, features])
    zeros = tf.zeros([k, batch, units])

    def forward(w: tf.Tensor, u: tf.Tensor, b: tf.Tensor, tape: bool) -> list[tf.Tensor]:
        """hs (steps // k, k, batch, u) (or the last chunk's h alone, where nothing else needs them), and
        with `tape` the factors of every step, each (steps // k, k, batch, ...)."""
        keep_hs = tape or return_sequences

        def chunk(carry: tuple[tf.Tensor, ...], x_k: tf.Tensor) -> tuple[tf.Tensor, ...]:
            h, c = carry[0][-1] if keep_hs else carry[0], carry[1]  # the previous chunk's last
            z = tf.reshape(_times(tf.reshape(x_k, [-1, features]), w) + b, [k, batch, 4 * units])
            hidden, factors = [], []
            for j in range(k):
                h, c, step_factors = _cell(z[j] + tf.matmul(h, u), c, gates)
                hidden.append(h)
                factors.append(step_factors)
            kept = tuple(tf.stack(list(f)) for f in zip(*factors, strict=True)) if tape else ()
            return (tf.stack(hidden) if keep_hs else h, c, *kept)

        start: tuple[tf.Tensor, ...] = (zeros if keep_hs else zeros[0], zeros[0])
        if tape:
            start += (tf.zeros([k, batch, 4 * units]), zeros, zeros)
        return list(tf.scan(chunk, chunks, initializer=start))

    def output(hs: tf.Tensor) -> tf.Tensor:
        if return_sequences:
            return tf.transpose(tf.reshape(hs, [steps, batch, units]), [1, 0, 2])
        return hs[-1, -1] if training else hs[-1]  # the last chunk's last h

    if not training:
        return output(forward(w, u, b, tape=False)[0])

    @tf.custom_gradient
    def run(x: tf.Tensor, w: tf.Tensor, u: tf.Tensor, b: tf.Tensor) -> Any:
        hs, _, *tape = forward(w, u, b, tape=True)
        return output(hs), lambda d_out: _scan_backward(d_out, chunks, hs, tape, w, u, return_sequences)

    return run(x, w, u, b)


def _scan_backward(
    d_out: tf.Tensor,
    chunks: tf.Tensor,
    hs: tf.Tensor,
    tape: list[tf.Tensor],
    w: tf.Tensor,
    u: tf.Tensor,
    return_sequences: bool,
) -> tuple[tf.Tensor, ...]:
    """Gradients for (x, kernel, recurrent_kernel, bias) of `_scan_sequence`: the chunks in reverse, each
    with its weight gradients as three matmuls over its k steps, summed over the chunks in the loop."""
    n, k, features = int(chunks.shape[0]), int(chunks.shape[1]), int(chunks.shape[3])
    steps, units, batch = n * k, int(u.shape[0]), tf.shape(chunks)[2]
    u_t = _materialised(tf.transpose(u))
    h_flat = tf.reshape(hs, [steps, batch, units])
    h_prev = tf.reshape(tf.concat([tf.zeros_like(h_flat[:1]), h_flat[:-1]], 0), tf.shape(hs))

    def chunk(carry: tuple[tf.Tensor, ...], elems: tuple[tf.Tensor, ...]) -> tuple[tf.Tensor, ...]:
        dh, dc, dw, du, db, _ = carry
        x_k, h_prev_k, partner, dc_from_h, forget, *d_hs = elems
        dz: list[tf.Tensor] = [tf.zeros(())] * k
        for j in reversed(range(k)):
            if d_hs:
                dh = dh + d_hs[0][j]
            dz[j], dc = _back_step(dh, dc, partner[j], dc_from_h[j], forget[j])
            dh = tf.matmul(dz[j], u_t)  # (wasted for the sequence's first step: 1 of `steps`)
        dz_k = tf.reshape(tf.stack(dz), [-1, 4 * units])  # (k*batch, 4u)
        return (
            dh,
            dc,
            dw + _times(tf.reshape(x_k, [-1, features]), dz_k, transpose_a=True),
            du + tf.matmul(tf.reshape(h_prev_k, [-1, units]), dz_k, transpose_a=True),
            db + tf.reduce_sum(dz_k, 0),
            tf.reshape(_times(dz_k, w, transpose_b=True), tf.shape(x_k)),
        )

    zero_h = tf.zeros_like(hs[0, 0])
    d_hs = [tf.reshape(tf.transpose(d_out, [1, 0, 2]), tf.shape(hs))] if return_sequences else []
    start = (zero_h if return_sequences else d_out, zero_h, tf.zeros_like(w), tf.zeros_like(u),
             tf.zeros_like(u[0]), tf.zeros_like(chunks[0]))  # fmt: skip
    _, _, dw, du, db, dx = tf.scan(chunk, (chunks, h_prev, *tape, *d_hs), initializer=start, reverse=True)
    dx = tf.transpose(tf.reshape(dx, [steps, batch, features]), [1, 0, 2])
    return dx, dw[0], du[0], db[0]  # (in reverse, the sums after the last chunk are the first chunk's)


def _times(a: tf.Tensor, b: tf.Tensor, transpose_a: bool = False, transpose_b: bool = False) -> tf.Tensor:
    """`tf.matmul`, but where a (transposed) is a column or b a row (one input feature: pixels) as a
    broadcast product and a sum: XLA:CPU's dot on such a shape took 62 of a 360 ms pixel step."""
    a_t = tf.transpose(a) if transpose_a else a
    b_t = tf.transpose(b) if transpose_b else b
    if a_t.shape[1] == 1:  # (n, 1) x (1, m): an outer product, no sum at all
        return a_t * b_t
    if b_t.shape[1] == 1:  # (n, m) x (m, 1): a weighted sum of each row
        return tf.reduce_sum(a_t * tf.transpose(b_t), 1, keepdims=True)
    if a_t.shape[0] == 1:  # (1, m) x (m, n)
        return tf.reduce_sum(tf.transpose(a_t) * b_t, 0, keepdims=True)
    return tf.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)


def _chunk(steps: int) -> int:
    return max(k for k in range(1, SCAN_CHUNK + 1) if steps % k == 0)


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

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return lstm_sequence(
            inputs,
            tf.convert_to_tensor(self.kernel),
            tf.convert_to_tensor(self.recurrent_kernel),
            tf.convert_to_tensor(self.bias),
            self.return_sequences,
            training=training is not False,  # None (a bare call, a gradient tape's): trainable
        )

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        if self.return_sequences:
            return (input_shape[0], input_shape[1], self.units)
        return (input_shape[0], self.units)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "return_sequences": self.return_sequences}
