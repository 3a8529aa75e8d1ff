"""Config: defaults, composition, overrides and the one-line messages for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from mnist_rnn.config import Cell, Config
from mnist_rnn.config_files import dump_config, load_config, parse_override
from mnist_rnn.errors import ConfigError
from tests.conftest import CONFIGS


def test_default_yaml_documents_exactly_the_schema_defaults() -> None:
    """Every key, at the schema's default; data.augment is the one key the default config turns on (a
    config that leaves it out trains on plain images)."""
    cfg = load_config(CONFIGS / "default.yaml")
    assert cfg.data.augment is not None and Config().data.augment is None
    assert cfg.model_copy(update={"data": cfg.data.model_copy(update={"augment": None})}) == Config()


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == path.stem or path.stem in ("default", "_base")


@pytest.mark.parametrize("task", ["row", "pixel", "permuted"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "janet"])
def test_the_benchmark_configs_are_the_papers_settings(task: str, cell: str) -> None:
    cfg = load_config(CONFIGS / "benchmark" / f"{task}_{cell}.yaml")
    layout = {"row": "rows", "pixel": "pixels", "permuted": "permuted_pixels"}[task]
    assert (cfg.data.layout, cfg.model.cell) == (layout, cell)
    # the JANET code's: batch 200, Adam 1e-3 held constant, norm clipping 5, 100 epochs; 1x128 for pMNIST
    assert (cfg.train.batch_size, cfg.train.learning_rate, cfg.train.clipnorm) == (200, 1e-3, 5.0)
    assert (cfg.train.lr_schedule, cfg.train.epochs) == ("none", 100)
    assert cfg.model.units == ((128,) if task == "permuted" else (128, 128))
    assert cfg.model.forget_bias == {"lstm": "unit", "janet": "chrono", "gru": None}[cell]


def test_shipped_configs_say_what_they_promise() -> None:
    gru = load_config(CONFIGS / "gru_stacked.yaml")
    assert gru.model.cell is Cell.gru and gru.model.units == (128, 128)
    lstm = load_config(CONFIGS / "lstm.yaml")
    assert lstm.model.cell is Cell.lstm and lstm.model.units == (128,)
    smoke = load_config(CONFIGS / "smoke.yaml")
    assert smoke.data.limit_train is not None and smoke.data.limit_train <= 5000


def test_base_chain_overrides_key_by_key_and_replaces_lists(write_config) -> None:
    write_config({"model": {"units": [8, 8, 8], "cell": "gru"}, "train": {"epochs": 3}}, "parent.yaml")
    child = write_config({"base": "parent.yaml", "model": {"units": [4]}}, "child.yaml")
    cfg = load_config(child)
    assert cfg.model.units == (4,)  # replaced, not merged element-wise
    assert cfg.model.cell is Cell.gru  # inherited
    assert cfg.train.epochs == 3


def test_set_values_are_parsed_as_yaml() -> None:
    cfg = load_config(CONFIGS / "default.yaml", ["model.units=[256, 256]", "train.learning_rate=1e-3"])
    assert cfg.model.units == (256, 256)
    assert cfg.train.learning_rate == pytest.approx(1e-3)
    assert parse_override("data.limit_train=null") == (("data", "limit_train"), None)


def test_exponent_floats_in_files_are_numbers_not_strings(write_config) -> None:
    # PyYAML's YAML 1.1 rules read `1e-3` as the string "1e-3"; our loader reads it as a float.
    path = write_config("train:\n  learning_rate: 1e-3\n  clipnorm: 5E+0\n")
    cfg = load_config(path)
    assert cfg.train.learning_rate == pytest.approx(0.001)
    assert cfg.train.clipnorm == pytest.approx(5.0)


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(ValidationError):
        cfg.model.units = (1,)  # type: ignore[misc]


def test_dumped_config_loads_back_to_the_same_config(write_config) -> None:
    cfg = load_config(CONFIGS / "smoke.yaml", ["model.bidirectional=true", "train.clipnorm=null"])
    again = load_config(write_config(dump_config(cfg), "resolved.yaml"))
    assert again == cfg
    assert "base" not in yaml.safe_load(dump_config(cfg))


# (file content, --set items, text the one-line message must contain)
BROKEN = [
    ("model:\n  unitz: [1]\n", [], "model.unitz: unknown key; did you mean 'units'?"),
    ("train:\n  epochs: many\n", [], "train.epochs: must be a valid integer"),
    ("model:\n  units: [64, -3]\n", [], "model.units[1]: must be a positive integer, got -3 (line 2)"),
    ("model:\n  cell: transformer\n", [], "model.cell: must be 'lstm', 'gru', 'simple_rnn' or 'janet'"),
    ("model:\n  units: [64\n", [], "invalid YAML (line 3"),
    ("", [], "the config file is empty"),
    ("- a\n- b\n", [], "the top level must be a mapping"),
    ("model:\n  units: 128\n", [], "model.units: must be a list"),
    ("data:\n  validation: 60000\n", [], "data.validation: must be less than 60000"),
    ("train:\n  lr_schedule: linear\n", [], "train.lr_schedule: must be 'none', 'cosine' or 'step'"),
    ("model:\n  dropout: 1.5\n", [], "model.dropout: must be less than 1"),
    ("data:\n  limit_train: 59000\n", [], "data.limit_train: must be at most 55000"),
    ("train:\n  early_stopping_patience: 2\ndata:\n  validation: 0\n", [], "data.validation is 0"),
    ("name: 'has space'\n", [], "name: must match pattern"),
    ("base: nowhere.yaml\n", [], "base: file"),
    ("train: 3\n", [], "train: must be a section"),
    ("data:\n  chunk_steps: 7\n", [], "data.chunk_steps: chunks carry state from one to the next"),
    (
        "data:\n  chunk_steps: 5\ntrain:\n  stateful: true\n",
        [],
        "must divide the 28 steps of layout rows, got 5",
    ),
    (
        "model:\n  head: mean\ndata:\n  chunk_steps: 7\ntrain:\n  stateful: true\n",
        [],
        "model.head: mean over time",
    ),
    (
        "data:\n  chunk_steps: 7\ntrain:\n  stateful: true\n  reset_states: never\n",
        [],
        "train.reset_states: is set by",
    ),
    (
        "model:\n  bidirectional: true\ntrain:\n  stateful: true\n",
        [],
        "model.bidirectional: cannot be stateful",
    ),
    ("train:\n  reset_states: sometimes\n", [], "train.reset_states"),
    (
        "model:\n  lstm_kernel: fused\n  cell: gru\n",
        [],
        "model.lstm_kernel: fused cannot run this model (model.cell is gru); use auto or keras (line 2)",
    ),
    (
        "model:\n  lstm_kernel: fused\n  cell: gru\n",
        [],
        "fused cannot run this model (model.cell is gru)",
    ),
    ("model:\n  lstm_kernel: fused\ntrain:\n  stateful: true\n", [], "(train.stateful is true)"),
    ("{}\n", ["train.nope=1"], "--set train.nope=1: train.nope: unknown key"),
    ("{}\n", ["model.units=[1,"], "--set model.units=[1,: invalid YAML"),
    ("{}\n", ["model.units"], "expected KEY=VALUE"),
    ("{}\n", ["seed.x=1"], "--set seed.x=1: seed: must be a valid integer"),
    ("seed: 1\n", ["seed.x=1"], "seed is a value, not a section"),
]


@pytest.mark.parametrize(("content", "overrides", "expected"), BROKEN, ids=[b[2][:40] for b in BROKEN])
def test_bad_config_gives_one_line_naming_source_and_key(write_config, content, overrides, expected) -> None:
    path = write_config(content, "x.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert str(path) in message or message.startswith("--set")


def test_missing_file_and_directory_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_base_cycle_is_reported(write_config) -> None:
    write_config({"base": "b.yaml"}, "a.yaml")
    b = write_config({"base": "a.yaml"}, "b.yaml")
    with pytest.raises(ConfigError, match="include each other"):
        load_config(b)


def test_error_in_a_base_file_names_that_file(write_config) -> None:
    parent = write_config("model:\n  units: [0]\n", "parent.yaml")
    child = write_config({"base": "parent.yaml", "train": {"epochs": 1}}, "child.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(child)
    assert str(info.value).startswith(f"{parent}: model.units[0]: must be a positive integer")


def test_data_dir_expands_the_home_directory() -> None:
    cfg = load_config(CONFIGS / "default.yaml", ["data.source=idx", "data.dir=~/mnist"])
    assert cfg.data.dir == Path.home() / "mnist"


def test_jit_compile_takes_yaml_booleans_as_on_and_off(write_config) -> None:
    # YAML 1.1 reads a bare `on` as true: both spellings must mean the same thing
    assert load_config(write_config("train:\n  jit_compile: on\n")).train.jit_compile == "on"
    assert load_config(write_config("train:\n  jit_compile: false\n")).train.jit_compile == "off"
