"""The schema of the one validated configuration: frozen, typed sections and the rules that span keys.

A config has the sections `data`, `model`, `train` and `run` plus `name` and `seed`. Every value is checked
by pydantic (`extra="forbid"`: a misspelt key is an error), and `cross_key_violation` names the key to
change when two keys do not go together. Components receive their own section where they can
(`build_model(cfg.model, ...)`). Reading YAML files, `base:` chains, `--set` and error wording with line
numbers is `config_files`'s job; this module knows nothing of files.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from mnist_rnn.mnist import LAYOUT_SHAPES, PERMUTED_LAYOUTS, TEST_SIZE, TRAIN_POOL, Layout, Source

Key = tuple[str | int, ...]  # a location in the config: ("model", "units", 1)

__all__ = ["Layout", "Source"]  # re-exported: the data section's enums are defined by `data`


class _Frozen(BaseModel):
    # extra="forbid": a misspelt key is an error, never silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class ChunkLoss(StrEnum):
    every_chunk = "every_chunk"  # each chunk's output is scored against the image's label
    last_chunk = "last_chunk"  # only the final chunk's (the whole sequence's) output is scored


class Cell(StrEnum):
    lstm = "lstm"
    gru = "gru"
    simple_rnn = "simple_rnn"
    janet = "janet"  # the forget-gate-only LSTM (van der Westhuizen & Lasenby 2018), `layers.JANETCell`


class ForgetBias(StrEnum):
    unit = "unit"  # forget-gate bias 1 (Keras's unit_forget_bias); the LSTM's default
    chrono = "chrono"  # b_f ~ log U(1, T_max - 1), LSTM b_i = -b_f (Tallec & Ollivier 2018); JANET's default


# The cells with a forget gate, and the initialisation each gets when model.forget_bias is left out.
FORGET_BIAS_DEFAULTS = {Cell.lstm: ForgetBias.unit, Cell.janet: ForgetBias.chrono}


class Head(StrEnum):
    last = "last"  # the last time step's output
    mean = "mean"  # the mean of the last layer's outputs over time


class LrSchedule(StrEnum):
    none = "none"
    cosine = "cosine"
    step = "step"


class LrExtend(StrEnum):
    """What a resumed run's epochs beyond its planned schedule train at (train.lr_extend)."""

    hold = "hold"  # the learning rate of the schedule's last planned epoch (fine-tuning; the default)
    restart = "restart"  # the schedule again over the added epochs, from train.learning_rate (SGDR's restart)


class LstmKernel(StrEnum):
    auto = "auto"  # fused on a CPU for runs long enough to repay XLA's compile, if the model allows it
    keras = "keras"  # keras.layers.LSTM (cuDNN on a GPU)
    fused = "fused"  # mnist_rnn.fused_lstm.FusedLSTM: same function and weights, fewer ops per step (CPU)


class Jit(StrEnum):
    auto = "auto"  # XLA where it pays: the fused LSTM, and long sequences (>= 100 steps, e.g. pixels)
    on = "on"
    off = "off"


class Strategy(StrEnum):
    none = "none"  # one device
    mirrored = "mirrored"  # tf.distribute.MirroredStrategy over train.devices (one machine)
    multi_worker = "multi_worker"  # tf.distribute.MultiWorkerMirroredStrategy from TF_CONFIG (machines)


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


def _expand_user(path: Path | None) -> Path | None:
    return path.expanduser() if path is not None else None


class AugmentConfig(_Frozen):
    """Random transforms of training images (augment.py): each draws uniformly from [-x, x] per image;
    scale from [1 - x, 1 + x]; blur's sigma from [0, x]. Zero turns a transform off."""

    rotation: Annotated[float, Field(ge=0.0, le=180.0)] = 0.0  # degrees
    translate: Annotated[float, Field(ge=0.0, le=14.0)] = 0.0  # pixels, each axis
    scale: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0  # relative size
    shear: Annotated[float, Field(ge=0.0, lt=60.0)] = 0.0  # degrees
    elastic_alpha: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0  # Simard et al. 2003's alpha (pixels)
    elastic_sigma: Annotated[float, Field(gt=0.0, le=10.0)] = 4.0  # smoothness of the elastic field
    thickness: Annotated[float, Field(ge=0.0, le=2.0)] = 0.0  # pixels of dilation (+) or erosion (-)
    blur: Annotated[float, Field(ge=0.0, le=3.0)] = 0.0  # Gaussian sigma, pixels


class DataConfig(_Frozen):
    source: Source = Source.embedded
    dir: Annotated[Path | None, AfterValidator(_expand_user)] = None
    layout: Layout = Layout.rows
    validation: Annotated[int, Field(ge=0, lt=TRAIN_POOL)] = 5_000
    limit_train: PositiveInt | None = None
    limit_test: Annotated[int, Field(gt=0, le=TEST_SIZE)] | None = None
    chunk_steps: PositiveInt | None = None  # stateful TBPTT: cut each sequence into chunks of N steps
    download: bool = False  # source: tfds only; never download unless the user allows it
    permutation_seed: Annotated[int, Field(ge=0, lt=2**32)] | None = None  # permuted_pixels; left out: 0
    augment: AugmentConfig | None = None  # training images only; off when left out

    @model_validator(mode="before")
    @classmethod
    def _default_permutation(cls, data: Any) -> Any:
        # Written out (0) in a permuted run's config.yaml, so the order a model reads is on record.
        permuted = isinstance(data, dict) and data.get("layout") in PERMUTED_LAYOUTS
        if permuted and data.get("permutation_seed") is None:
            return {**data, "permutation_seed": 0}
        return data


class ModelConfig(_Frozen):
    cell: Cell = Cell.lstm
    units: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (128, 128)
    bidirectional: bool = False
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    recurrent_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    projection: PositiveInt | None = None
    head: Head = Head.last
    lstm_kernel: LstmKernel = LstmKernel.auto
    forget_bias: ForgetBias | None = None  # left out: the cell's default (FORGET_BIAS_DEFAULTS)

    @model_validator(mode="before")
    @classmethod
    def _default_forget_bias(cls, data: Any) -> Any:
        # Resolved here, so a run's config.yaml says which initialisation it used.
        if isinstance(data, dict) and data.get("forget_bias") is None:
            cell = data.get("cell", Cell.lstm)
            if cell in FORGET_BIAS_DEFAULTS:
                return {**data, "forget_bias": FORGET_BIAS_DEFAULTS[Cell(cell)]}
        return data


class TrainConfig(_Frozen):
    epochs: PositiveInt = 15
    batch_size: PositiveInt = 128
    learning_rate: PositiveFloat = 2.0e-3
    clipnorm: PositiveFloat | None = 1.0
    lr_schedule: LrSchedule = LrSchedule.cosine
    lr_step_every: PositiveInt = 5  # lr_schedule: step — epochs between decays
    lr_step_factor: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    lr_extend: LrExtend = LrExtend.hold  # a finished run trained longer (--resume with more train.epochs)
    early_stopping_patience: PositiveInt | None = None
    checkpoint_every_steps: PositiveInt | None = None  # also save `last` every N batches
    checkpoint_every_minutes: PositiveFloat | None = 10.0  # ... and at least this often
    stateful: bool = False
    reset_states: Literal["epoch", "never"] | PositiveInt = "epoch"  # or every N batches
    chunk_loss: ChunkLoss = ChunkLoss.every_chunk
    shuffle: bool = True
    device: Device = Device.auto
    deterministic: bool = True
    # Speed (see docs/performance.md): batches per compiled call, and XLA for the train/predict steps.
    steps_per_execution: PositiveInt = 32
    # YAML 1.1 reads a bare `on`/`off` as true/false: take booleans as on/off.
    jit_compile: Annotated[
        Jit, BeforeValidator(lambda v: ("on" if v else "off") if isinstance(v, bool) else v)
    ] = Jit.auto
    eval_batch_size: PositiveInt = 1_000
    # Threads per CPU op (TensorFlow's and XLA's kernels); None: the plan's (execution.planned_cpu_threads).
    cpu_threads: PositiveInt | None = None
    # Each batch as this many concurrent XLA computations (sharded_step.py); None: `execution` decides (one
    # per CPU core for stacked models on short sequences under XLA). Results differ in the last digits
    # between counts, so the run plan records it.
    batch_shards: PositiveInt | None = None
    # Several devices (see README, "Training on GPUs and clusters"): batch_size is the global batch.
    strategy: Strategy = Strategy.none
    devices: Annotated[tuple[str, ...], Field(min_length=1)] | None = None  # mirrored; default: every GPU
    mixed_precision: bool = False  # mixed_float16 on a GPU (float32 output layer, loss scaling)


class RunConfig(_Frozen):
    root: Path = Path("runs")
    tensorboard: bool = True


class Config(_Frozen):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] = "default"
    seed: Annotated[int, Field(ge=0, lt=2**31)] = 42
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    run: RunConfig = RunConfig()


# ----------------------------------------------------------------------------------- cross-key rules


def cross_key_violation(cfg: Config) -> tuple[Key, str] | None:
    """The first rule that spans keys and that `cfg` breaks: (the key that has to change, why), or None."""
    for check in (_data_rules, _model_rules, _stateful_rules, _strategy_rules, _shard_rules):
        if (found := check(cfg)) is not None:
            return found
    return None


def _data_rules(cfg: Config) -> tuple[Key, str] | None:
    data = cfg.data
    available = TRAIN_POOL - data.validation
    if data.limit_train is not None and data.limit_train > available:
        return ("data", "limit_train"), (
            f"must be at most {available} (60000 images minus data.validation={data.validation}), "
            f"got {data.limit_train}"
        )
    if cfg.train.early_stopping_patience is not None and data.validation == 0:
        return ("train", "early_stopping_patience"), (
            "early stopping watches validation accuracy, but data.validation is 0; "
            "set data.validation > 0 or remove early_stopping_patience"
        )
    if data.dir is not None and data.source in (Source.embedded, Source.synthetic):
        return ("data", "dir"), f"is only read by source idx or tfds, but data.source is {data.source}"
    return None


def _model_rules(cfg: Config) -> tuple[Key, str] | None:
    data, model = cfg.data, cfg.model
    if data.permutation_seed is not None and data.layout not in PERMUTED_LAYOUTS:
        return ("data", "permutation_seed"), (
            f"only permuted layouts read pixels in a permuted order, but data.layout is {data.layout}; "
            "use layout: permuted_pixels or remove permutation_seed"
        )
    if model.forget_bias is not None and model.cell not in FORGET_BIAS_DEFAULTS:
        return ("model", "forget_bias"), (
            f"model.cell: {model.cell} has no forget gate; use lstm or janet, or remove forget_bias"
        )
    if model.cell is Cell.janet and model.recurrent_dropout > 0:
        return ("model", "recurrent_dropout"), (
            "the janet cell has no recurrent dropout; use model.dropout (between layers) or set it to 0"
        )
    return None


def _stateful_rules(cfg: Config) -> tuple[Key, str] | None:
    steps, chunk = LAYOUT_SHAPES[cfg.data.layout][0], cfg.data.chunk_steps
    if chunk is not None and not cfg.train.stateful:
        return ("data", "chunk_steps"), "chunks carry state from one to the next: set train.stateful: true"
    if chunk is not None and steps % chunk:
        return ("data", "chunk_steps"), (
            f"must divide the {steps} steps of layout {cfg.data.layout}, got {chunk}"
        )
    if cfg.train.stateful and cfg.model.bidirectional:
        return ("model", "bidirectional"), (
            "cannot be stateful: the backward direction would need the end of a sequence before its start; "
            "set model.bidirectional: false or train.stateful: false"
        )
    if chunk is not None and cfg.model.head is Head.mean:
        return ("model", "head"), (
            "mean over time would only see one chunk; use head: last with data.chunk_steps"
        )
    if chunk is not None and cfg.data.augment is not None:
        return ("data", "augment"), (
            "cannot be used with data.chunk_steps (each chunk of an image would be transformed apart); "
            "set data.augment: null (--set data.augment=null) or remove data.chunk_steps"
        )
    if chunk is not None and cfg.train.reset_states != "epoch":
        return ("train", "reset_states"), "is set by data.chunk_steps (reset after each image's last chunk)"
    return None


def _strategy_rules(cfg: Config) -> tuple[Key, str] | None:
    train = cfg.train
    if train.devices is not None and train.strategy is not Strategy.mirrored:
        return ("train", "devices"), "is read by train.strategy: mirrored only; set it or remove devices"
    if train.strategy is Strategy.none:
        return None
    if train.stateful:
        return ("train", "stateful"), (
            f"cannot run under train.strategy: {train.strategy}: a strategy splits each batch across "
            "replicas, so no sample's state would meet it in the next batch; set train.stateful: false"
        )
    if train.jit_compile is Jit.on:
        return ("train", "jit_compile"), (
            f"XLA under train.strategy: {train.strategy} is a known Keras trap (keras#18627); use auto or off"
        )
    if cfg.model.lstm_kernel is LstmKernel.fused:
        return ("model", "lstm_kernel"), (
            f"fused is a single-device CPU kernel; use auto or keras with train.strategy: {train.strategy}"
        )
    return None


def _shard_rules(cfg: Config) -> tuple[Key, str] | None:
    train = cfg.train
    if train.batch_shards is None or train.batch_shards == 1:
        return None
    blocker = (
        "train.stateful is true (each sample's state lives in one batch row)" if train.stateful
        else f"train.strategy is {train.strategy} (the strategy splits the batch itself)"
        if train.strategy is not Strategy.none
        else "train.jit_compile is off (each shard is one XLA computation)" if train.jit_compile is Jit.off
        else None
    )  # fmt: skip
    if blocker:
        return ("train", "batch_shards"), (
            f"cannot split the batch: {blocker}; remove batch_shards or set it to 1"
        )
    if train.batch_shards > train.batch_size:
        return ("train", "batch_shards"), (
            f"must be at most train.batch_size={train.batch_size}, got {train.batch_shards}"
        )
    return None
