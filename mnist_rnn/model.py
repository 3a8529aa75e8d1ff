"""One builder that maps the `model` section to a Keras model (keras-io's `make_model` pattern).

    input (batch, steps, features)
      -> [Dense(projection, tanh) per step]           model.projection
      -> RNN(units[0]) -> Dropout -> ... -> RNN(units[-1])   stacked; all but the last return sequences
      -> last step | mean over steps                  model.head
      -> Dropout -> Dense(10, softmax)

`model.dropout` is applied *between* layers (as PyTorch's `nn.LSTM(dropout=...)` does), not through the
RNN's own `dropout` argument, and the recurrent layers keep Keras's defaults (tanh/sigmoid, bias, no
unroll) so that on a GPU Keras picks the cuDNN kernel. Only `model.recurrent_dropout` > 0 or the
`simple_rnn` cell rule cuDNN out; `execution.cudnn_blockers` names them so training can say so.

`fused=True` (training on a CPU, see `execution.plan_execution`) swaps each LSTM for `FusedLSTM`, which has
the same function and the same weights in the same order, so `set_weights` moves a trained model into
the stock-layer twins that export, streaming and stateful scoring build with `build_twin`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_rnn.config import Cell, ForgetBias, Head, ModelConfig
from mnist_rnn.mnist import NUM_CLASSES

if TYPE_CHECKING:
    import keras


def _recurrent_layer(
    cfg: ModelConfig,
    units: int,
    return_sequences: bool,
    name: str,
    cpu_safe: bool,
    unroll: bool,
    stateful: bool = False,
    fused: bool = False,
) -> keras.layers.Layer:
    import keras

    if fused:
        from mnist_rnn.fused_lstm import FusedLSTM

        return FusedLSTM(units, return_sequences=return_sequences, name=name)
    if cfg.cell is Cell.janet:
        from mnist_rnn.layers import janet

        layer = janet(units, return_sequences=return_sequences, stateful=stateful, unroll=unroll, name=name)
        return keras.layers.Bidirectional(layer, name=f"bi_{name}") if cfg.bidirectional else layer

    layer_type = {
        Cell.lstm: keras.layers.LSTM,
        Cell.gru: keras.layers.GRU,
        Cell.simple_rnn: keras.layers.SimpleRNN,
    }
    extra: dict[str, object] = {"unroll": unroll, "stateful": stateful}
    if cfg.cell is Cell.lstm:  # chrono overwrites the bias after the build (`chrono_bias`)
        extra["unit_forget_bias"] = cfg.forget_bias is not ForgetBias.chrono
    if cpu_safe and cfg.cell is not Cell.simple_rnn:
        extra["use_cudnn"] = False  # never trace the cuDNN kernel into an exported graph
    layer = layer_type[cfg.cell](
        units,
        return_sequences=return_sequences,
        recurrent_dropout=cfg.recurrent_dropout,
        name=name,
        **extra,
    )
    if cfg.bidirectional:
        return keras.layers.Bidirectional(layer, name=f"bi_{name}")
    return layer


def build_model(
    cfg: ModelConfig,
    input_shape: tuple[int, int],
    batch_size: int | None = None,
    cpu_safe: bool = False,
    unroll: bool = False,
    stateful: bool = False,
    fused: bool = False,
    sequence_steps: int | None = None,
    shards: int = 1,
    every_step: bool = False,
) -> keras.Model:
    """Build (not compile) the classifier for sequences of shape `input_shape` = (steps, features).

    `cpu_safe`, `unroll` and a fixed `batch_size` build the serving twins used by export: the same
    layers and weight layout, but a graph with no cuDNN op (SavedModel) or no loop (TFLite). `stateful`
    (with a fixed `batch_size`) carries each sample's final state into the next batch. `fused` uses
    `FusedLSTM` for the LSTM layers (the caller checks `execution.fused_lstm_blockers`). `sequence_steps` is
    the whole sequence's length where `input_shape` is a chunk of it (chrono's T_max). `shards` > 1 trains
    each batch as that many concurrent XLA computations (`sharded_step.ShardedModel`; same layers).
    `every_step` (head `last` only): the last layer returns every step and the classifier reads each, so
    the output is (batch, steps, 10), the probabilities after each step (`streaming.EveryStep`).
    """
    import keras

    inputs = keras.Input(shape=input_shape, batch_size=batch_size, name="sequence")
    x = inputs
    if cfg.projection:
        x = keras.layers.Dense(cfg.projection, activation="tanh", name="projection")(x)  # per step
    for i, units in enumerate(cfg.units):
        is_last = i == len(cfg.units) - 1
        # The head needs every step only for `mean`; otherwise the last layer returns its last step.
        return_sequences = not is_last or cfg.head is Head.mean or every_step
        name = f"{cfg.cell}_{i}"
        x = _recurrent_layer(cfg, units, return_sequences, name, cpu_safe, unroll, stateful, fused)(x)
        if cfg.dropout and not is_last:
            x = keras.layers.Dropout(cfg.dropout, name=f"dropout_{i}")(x)
    if cfg.head is Head.mean:
        x = keras.layers.GlobalAveragePooling1D(name="mean_over_time")(x)  # (batch, steps, u) -> (batch, u)
    if cfg.dropout:
        x = keras.layers.Dropout(cfg.dropout, name="dropout_head")(x)
    # float32 whatever the dtype policy: under mixed_float16 the softmax and the loss stay in float32.
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities", dtype="float32")(x)
    name = f"{cfg.cell}_{'x'.join(map(str, cfg.units))}"
    if shards > 1:
        from mnist_rnn.sharded_step import ShardedModel

        model: keras.Model = ShardedModel(inputs, outputs, name=name, shards=shards)
    else:
        model = keras.Model(inputs, outputs, name=name)
    if cfg.forget_bias is ForgetBias.chrono:
        for bias in _recurrent_biases(model):
            bias.assign(chrono_bias(cfg.cell, int(bias.shape[0]), sequence_steps or input_shape[0]))
    return model


def chrono_bias(cell: Cell, size: int, t_max: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Chrono initialisation (Tallec & Ollivier 2018) of one layer's bias vector of `size` values.

    b_f ~ log U(1, T_max - 1) with T_max the sequence length, so forget gates start with memory time
    constants spread over the whole sequence; for an LSTM (bias [i, f, c, o]) also b_i = -b_f, the rest 0;
    for JANET (bias [f, c]) the candidate's bias stays 0. Drawn from NumPy's global generator, which
    `execution.seed_everything` seeds, unless `rng` is given.
    """
    gates = 4 if cell is Cell.lstm else 2
    units = size // gates
    draw = (rng or np.random).uniform(1.0, max(t_max - 1, 1) + 1e-7, units)
    forget = np.log(draw).astype(np.float32)
    bias = np.zeros(size, np.float32)
    if cell is Cell.lstm:
        bias[:units], bias[units : 2 * units] = -forget, forget
    else:
        bias[:units] = forget
    return bias


def _recurrent_biases(model: keras.Model) -> list[Any]:
    """Each recurrent layer's bias variable (both directions of a bidirectional one)."""
    import keras

    biases = []
    for layer in model.layers:
        bidirectional = isinstance(layer, keras.layers.Bidirectional)
        for rnn in [layer.forward_layer, layer.backward_layer] if bidirectional else [layer]:
            if isinstance(rnn, keras.layers.RNN):  # LSTM and JANET keep their weights in the cell
                biases.append(rnn.cell.bias)
            elif type(rnn).__name__ == "FusedLSTM":
                biases.append(rnn.bias)
    return biases


def uses_fused_lstm(model: keras.Model) -> bool:
    return any(type(layer).__name__ == "FusedLSTM" for layer in model.layers)


def recurrent_states(model: keras.Model) -> list[Any]:
    """The state variables of a stateful model's recurrent layers (what carries across batches)."""
    return [v for layer in model.layers for v in (getattr(layer, "states", None) or []) if v is not None]


def reset_states(model: keras.Model) -> None:
    """Zero the carried state of every recurrent layer (stacked and bidirectional alike)."""
    for layer in model.layers:
        inner = getattr(layer, "forward_layer", layer)  # Bidirectional: ask its wrapped layer
        if getattr(inner, "stateful", False):
            layer.reset_state()


def build_twin(
    cfg: ModelConfig,
    weights: list[np.ndarray],
    input_shape: tuple[int, int],
    *,
    batch_size: int | None = None,
    stateful: bool = False,
    cpu_safe: bool = False,
    unroll: bool = False,
    every_step: bool = False,
    fused: bool = False,
) -> keras.Model:
    """A trained model's `weights` in a freshly built model of another shape or kind: the one way a
    trained network is rebuilt for scoring, streaming and export.

    - stateless over whole sequences (the defaults): scores a stateful or chunk-trained run, so every
      image is scored and no carried state leaks in;
    - `batch_size=1, stateful=True` with a chunk as `input_shape`: streaming, a step at a time;
    - `cpu_safe=True`: no cuDNN op in the graph (a GPU-trained model serves on a CPU);
    - `unroll=True` with a fixed batch: no loop in the graph (TFLite builtin ops).
    - `every_step=True`: the probabilities after every step, for whole sequences (serve's `steps`).
    - `fused=True`: `FusedLSTM` layers, for scoring inside this process only (`evaluate.Scorer`).
    Otherwise the stock Keras layers: artefacts load without our code.
    """
    # The weights are set below: no initialisation to draw (chrono would use up random numbers).
    twin = build_model(
        cfg.model_copy(update={"forget_bias": None}),
        input_shape,
        batch_size=batch_size,
        cpu_safe=cpu_safe,
        unroll=unroll,
        stateful=stateful,
        every_step=every_step,
        fused=fused,
    )
    twin.set_weights(weights)
    return twin


def fixed_rows_calls(model: keras.Model, rows: int) -> Callable[[np.ndarray], np.ndarray]:
    """x (N, ...) -> the model's outputs, computed as XLA calls of exactly `rows` rows (zero-padded).

    A row's numbers then do not depend on the other rows of its call: with the same picture, serve answers
    the same bits whether a request was alone or shared a call. Keras's graph path does not promise that:
    oneDNN's AVX2 matmul kernels gave last-bit differences depending on the other rows' contents (emulated
    with ONEDNN_MAX_CPU_ISA=AVX2), even with every call padded; XLA's calls gave the same bits for 48 of 48
    digits alone and in any batch, with XLA held to AVX2 too (on a CPU; see below for a GPU). One compiled
    shape serves every call.
    """
    import tensorflow as tf

    # On a GPU, a plain graph of the same fixed shape: Keras's cuDNN layers cannot be XLA-compiled (Keras
    # marks them `supports_jit = False`), and cuDNN's own kernels make no such promise anyway.
    xla = not tf.config.list_logical_devices("GPU")
    call = tf.function(lambda x: model(x, training=False), jit_compile=xla)

    def run(x: np.ndarray) -> np.ndarray:
        parts = []
        for start in range(0, max(len(x), 1), rows):
            part = x[start : start + rows]
            padded = np.zeros((rows, *x.shape[1:]), np.float32)
            padded[: len(part)] = part
            parts.append(np.asarray(call(padded))[: len(part)])
        return np.concatenate(parts)

    return run
