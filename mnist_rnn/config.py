"""The one validated configuration, its YAML files and `--set` overrides.

A config file is YAML with the sections `data`, `model`, `train` and `run` plus `name` and `seed`. It may
name a `base:` file (relative to itself) that it overrides key by key; lists are replaced, not merged.
Every value is checked by a frozen pydantic schema, and every error is reported as one line naming the
source (file and line, or the `--set` item), the key and the fix. Each component receives only its own
section (`build_model(cfg.model, ...)`), never the whole config.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
)

from mnist_rnn.errors import ConfigError

TRAIN_POOL = 60_000  # images in MNIST's training file; validation is carved out of these
TEST_SIZE = 10_000

Key = tuple[str | int, ...]


class _Frozen(BaseModel):
    # extra="forbid": a misspelt key is an error, never silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Source(StrEnum):
    embedded = "embedded"  # the copy of the real MNIST inside the package (offline, default)
    idx = "idx"  # IDX files (gzip or raw) from data.dir or $MNIST_RNN_DATA_DIR
    tfds = "tfds"  # tensorflow-datasets
    synthetic = "synthetic"  # class-dependent noise for tests; never chosen unless asked for


class Layout(StrEnum):
    rows = "rows"  # 28 steps of 28 features, one image row per step
    pixels = "pixels"  # 784 steps of 1 feature, one pixel per step (pixel MNIST)


LAYOUT_SHAPES = {Layout.rows: (28, 28), Layout.pixels: (784, 1)}  # (steps, features)


class ChunkLoss(StrEnum):
    every_chunk = "every_chunk"  # each chunk's output is scored against the image's label
    last_chunk = "last_chunk"  # only the final chunk's (the whole sequence's) output is scored


class Cell(StrEnum):
    lstm = "lstm"
    gru = "gru"
    simple_rnn = "simple_rnn"


class Head(StrEnum):
    last = "last"  # the last time step's output
    mean = "mean"  # the mean of the last layer's outputs over time


class LrSchedule(StrEnum):
    none = "none"
    cosine = "cosine"
    step = "step"


class LstmKernel(StrEnum):
    auto = "auto"  # fused on a CPU for runs long enough to repay XLA's compile, if the model allows it
    keras = "keras"  # keras.layers.LSTM (cuDNN on a GPU)
    fused = "fused"  # mnist_rnn.fused_lstm.FusedLSTM: same function and weights, fewer ops per step (CPU)


FUSED_MAX_STEPS = 128  # the fused LSTM unrolls its loop in the graph; beyond this it grows too large
# `auto` picks the fused LSTM for runs of at least this many training images x epochs. Measured on 2 cores
# (docs/performance.md): its XLA compile costs 4-11 s more than Keras's graph per batch shape (an epoch's
# partial last batch is a second shape), and it saves 40-100 us per image, so it pays from about 300,000
# (the default config: 55,000 x 12 = 660,000; the smoke config: 12,000).
FUSED_MIN_SAMPLES = 300_000


class Jit(StrEnum):
    auto = "auto"  # XLA where it pays: the fused LSTM, and long sequences (>= 100 steps, e.g. pixels)
    on = "on"
    off = "off"


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


def _expand_user(path: Path | None) -> Path | None:
    return path.expanduser() if path is not None else None


def training_images(cfg: DataConfig) -> int:
    """How many images one training epoch sees (before any stateful remainder is dropped)."""
    return cfg.limit_train or (TRAIN_POOL - cfg.validation)


class DataConfig(_Frozen):
    source: Source = Source.embedded
    dir: Annotated[Path | None, AfterValidator(_expand_user)] = None
    layout: Layout = Layout.rows
    validation: Annotated[int, Field(ge=0, lt=TRAIN_POOL)] = 5_000
    limit_train: PositiveInt | None = None
    limit_test: Annotated[int, Field(gt=0, le=TEST_SIZE)] | None = None
    chunk_steps: PositiveInt | None = None  # stateful TBPTT: cut each sequence into chunks of N steps
    download: bool = False  # source: tfds only; never download unless the user allows it


class ModelConfig(_Frozen):
    cell: Cell = Cell.lstm
    units: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (128, 128)
    bidirectional: bool = False
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    recurrent_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    projection: PositiveInt | None = None
    head: Head = Head.last
    lstm_kernel: LstmKernel = LstmKernel.auto


class TrainConfig(_Frozen):
    epochs: PositiveInt = 12
    batch_size: PositiveInt = 128
    learning_rate: PositiveFloat = 1.0e-3
    clipnorm: PositiveFloat | None = 1.0
    lr_schedule: LrSchedule = LrSchedule.cosine
    lr_step_every: PositiveInt = 5  # lr_schedule: step — epochs between decays
    lr_step_factor: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
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


# --------------------------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-3` as a float (YAML 1.2), where PyYAML's 1.1 rules give a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, source: str) -> tuple[Any, dict[Key, int]]:
    """Parse one YAML document; return the data and the line (1-based) of every key and list item."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}; fix the syntax") from None
    finally:
        loader.dispose()
    lines: dict[Key, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(node: yaml.Node, prefix: Key, out: dict[Key, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = prefix + (key_node.value,)
            out[key] = key_node.start_mark.line + 1
            _collect_lines(value_node, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[prefix + (i,)] = item.start_mark.line + 1
            _collect_lines(item, prefix + (i,), out)


# ------------------------------------------------------------------------------------- composition


class _Layers:
    """The merged raw dict plus, for every key, where its value came from (for error messages)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.origin: dict[Key, tuple[str, int | None]] = {}

    def merge(self, data: dict[str, Any], lines: dict[Key, int], source: str) -> None:
        _deep_merge(self.data, data)
        for key in _leaf_keys(data):
            self.origin[key] = (source, None)
        for key, line in lines.items():
            self.origin[key] = (source, line)

    def message(self, loc: Key, msg: str) -> str:
        """`configs/x.yaml: model.units[1]: must be a positive integer, got -3 (line 7)`."""
        source, line = "config", None
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.origin:
                source, line = self.origin[loc[:n]]
                break
        else:  # the bad value was built from keys below loc (e.g. `--set seed.x=1` made seed a mapping)
            below = [key for key in self.origin if key[: len(loc)] == loc]
            if below:
                source, line = self.origin[below[0]]
        suffix = f" (line {line})" if line is not None else ""
        return f"{source}: {_dotted(loc)}: {msg}{suffix}"


def _deep_merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _leaf_keys(data: Any, prefix: Key = ()) -> list[Key]:
    if isinstance(data, dict):
        return [k for key, v in data.items() for k in _leaf_keys(v, prefix + (key,))] or [prefix]
    return [prefix]


def _read_file(path: Path, chain: tuple[Path, ...], layers: _Layers) -> None:
    """Merge `path` (after its `base:` chain) into `layers`."""
    shown = str(path)
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError(f"{shown}: base: configs include each other ({cycle}); remove one `base:`")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{shown}: config file not found; check the path passed to --config") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a directory, not a config file; pass a .yaml file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: cannot read config file ({exc}); check the file") from None
    data, lines = parse_yaml(text, shown)
    if data is None:
        raise ConfigError(f"{shown}: the config file is empty; add keys, e.g. `base: default.yaml`")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{shown}: the top level must be a mapping of keys (name, seed, data, model, train, run), "
            f"got {type(data).__name__}"
        )
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{shown}: base: must be a path to another config file, got {base!r}")
        base_path = Path(base) if Path(base).is_absolute() else path.parent / base
        if not base_path.exists():
            raise ConfigError(f"{shown}: base: file {base_path} not found; paths are relative to {shown}")
        _read_file(base_path, (*chain, resolved), layers)
    layers.merge(data, lines, shown)


def parse_override(item: str) -> tuple[Key, Any]:
    """`model.units=[256,256]` -> (("model", "units"), [256, 256]); the value is parsed as YAML."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. --set train.epochs=3")
    parts = tuple(key.split("."))
    if any(not p or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in parts):
        raise ConfigError(f"--set {item}: {key!r} is not a dotted key like train.learning_rate")
    value, _ = parse_yaml(raw, f"--set {item}")
    return parts, value


def _apply_override(layers: _Layers, item: str) -> None:
    parts, value = parse_override(item)
    node = layers.data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"--set {item}: {where} is a value, not a section; set {where}=... instead")
        node = child
    node[parts[-1]] = value
    layers.origin[parts] = (f"--set {item}", None)
    for key in list(layers.origin):  # entries below the replaced key no longer describe it
        if key[: len(parts)] == parts and key != parts:
            del layers.origin[key]


def load_config(path: Path | str, overrides: Sequence[str] = ()) -> Config:
    """Read `path` with its `base:` chain, apply `--set` overrides, validate; ConfigError on any problem."""
    layers = _Layers()
    _read_file(Path(path), (), layers)
    for item in overrides:
        _apply_override(layers, item)
    try:
        cfg = Config.model_validate(layers.data)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, layers)) from None
    _check_combinations(cfg, layers)
    return cfg


def fused_lstm_blockers(cfg: Config) -> list[str]:
    """Why the fused LSTM (stateless, unidirectional, short sequences) cannot run `cfg`; empty if it can."""
    reasons = []
    if cfg.model.cell is not Cell.lstm:
        reasons.append(f"model.cell is {cfg.model.cell}")
    if cfg.model.bidirectional:
        reasons.append("model.bidirectional is true")
    if cfg.model.recurrent_dropout > 0:
        reasons.append("model.recurrent_dropout is not 0")
    if cfg.train.stateful:
        reasons.append("train.stateful is true")
    steps = LAYOUT_SHAPES[cfg.data.layout][0]
    if steps > FUSED_MAX_STEPS:
        reasons.append(f"layout {cfg.data.layout} has {steps} steps, more than {FUSED_MAX_STEPS}")
    return reasons


def _check_combinations(cfg: Config, layers: _Layers) -> None:
    """Rules that span keys, reported at the key that has to change."""

    def fail(loc: Key, msg: str) -> None:
        raise ConfigError(layers.message(loc, msg))

    available = TRAIN_POOL - cfg.data.validation
    if cfg.data.limit_train is not None and cfg.data.limit_train > available:
        fail(
            ("data", "limit_train"),
            f"must be at most {available} (60000 images minus data.validation={cfg.data.validation}), "
            f"got {cfg.data.limit_train}",
        )
    if cfg.train.early_stopping_patience is not None and cfg.data.validation == 0:
        fail(
            ("train", "early_stopping_patience"),
            "early stopping watches validation accuracy, but data.validation is 0; "
            "set data.validation > 0 or remove early_stopping_patience",
        )
    steps = LAYOUT_SHAPES[cfg.data.layout][0]
    chunk = cfg.data.chunk_steps
    if chunk is not None and not cfg.train.stateful:
        fail(("data", "chunk_steps"), "chunks carry state from one to the next: set train.stateful: true")
    if chunk is not None and steps % chunk:
        fail(
            ("data", "chunk_steps"), f"must divide the {steps} steps of layout {cfg.data.layout}, got {chunk}"
        )
    if cfg.train.stateful and cfg.model.bidirectional:
        fail(
            ("model", "bidirectional"),
            "cannot be stateful: the backward direction would need the end of a sequence before its start; "
            "set model.bidirectional: false or train.stateful: false",
        )
    if chunk is not None and cfg.model.head is Head.mean:
        fail(
            ("model", "head"), "mean over time would only see one chunk; use head: last with data.chunk_steps"
        )
    if chunk is not None and cfg.train.reset_states != "epoch":
        fail(("train", "reset_states"), "is set by data.chunk_steps (reset after each image's last chunk)")
    if cfg.model.lstm_kernel is LstmKernel.fused and (blockers := fused_lstm_blockers(cfg)):
        why = "; ".join(blockers)
        fail(("model", "lstm_kernel"), f"fused cannot run this model ({why}); use auto or keras")
    if cfg.data.dir is not None and cfg.data.source in (Source.embedded, Source.synthetic):
        fail(("data", "dir"), f"is only read by source idx or tfds, but data.source is {cfg.data.source}")


# --------------------------------------------------------------------------------------- messages


def _dotted(loc: Key) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(loc: Key) -> list[str]:
    """The valid keys of the section that `loc` points into (for 'did you mean')."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _describe(err: Any) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    loc = tuple(err["loc"])
    if kind == "extra_forbidden":
        valid = _fields_at(loc)
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown key; {hint}valid keys here: {', '.join(valid)}"
    if kind == "greater_than" and ctx.get("gt") == 0 and isinstance(value, int):
        return f"must be a positive integer, got {value!r}"
    if kind in ("tuple_type", "list_type"):
        return f"must be a list, e.g. [128, 128], got {value!r}"
    if kind == "model_type" or kind == "model_attributes_type":
        return f"must be a section (a mapping of keys), got {value!r}"
    msg = err["msg"]
    msg = re.sub(r"^Input should be", "must be", msg)
    msg = re.sub(r"^String should match pattern", "must match pattern", msg)
    msg = msg[0].lower() + msg[1:]
    return f"{msg}, got {value!r}"


def _first_error(exc: ValidationError, layers: _Layers) -> str:
    errors = exc.errors()
    err = errors[0]
    loc = tuple(err["loc"])
    more = f" [and {len(errors) - 1} more error(s)]" if len(errors) > 1 else ""
    return layers.message(loc, _describe(err)) + more


# ------------------------------------------------------------------------------------------- output


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return cfg.model_dump(mode="json")


def config_diff(a: Config, b: Config) -> list[str]:
    """Dotted keys whose values differ between two configs."""

    def flat(data: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(data, dict):
            return {k: v for key, value in data.items() for k, v in flat(value, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): data}

    fa, fb = flat(config_to_dict(a)), flat(config_to_dict(b))
    return sorted(key for key in fa.keys() | fb.keys() if fa.get(key) != fb.get(key))


class _Dumper(yaml.SafeDumper):
    """Sections in block style, lists inline (`units: [128, 128]`), as in configs/*.yaml."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML: enough to rerun with `mnist-rnn train --config`."""
    return yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
