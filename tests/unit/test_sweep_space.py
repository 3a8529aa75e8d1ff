"""What a sweep searches over: `--grid` and `--search` items parsed, drawn from an Optuna trial as the config
reads them, and refused in one line when they cannot be."""

from __future__ import annotations

import math

import optuna
import pytest

from mnist_rnn.errors import ConfigError
from mnist_rnn.sweep_space import label, parse_space


def test_a_grid_of_lists_travels_as_yaml_text_and_comes_back_as_lists() -> None:
    (units,) = parse_space(["model.units=[[64],[128,128]]"], [])
    assert units.choices == ("[64]", "[128, 128]")
    study = optuna.create_study(sampler=optuna.samplers.GridSampler({"model.units": list(units.choices)}))
    drawn = sorted(units.suggest(study.ask()) for _ in range(2))
    assert drawn == [[64], [128, 128]]


def test_search_distributions_draw_within_their_ranges() -> None:
    params = parse_space(
        [],
        ["train.learning_rate=loguniform(1e-4,1e-2)", "model.dropout=uniform(0,0.5)",
         "train.batch_size=int(32,256)", "model.cell=choice(lstm,gru)"],
    )  # fmt: skip
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        lr, dropout, batch, cell = (p.suggest(study.ask()) for p in params)
        assert 1e-4 <= lr <= 1e-2 and 0 <= dropout <= 0.5 and cell in ("lstm", "gru")
        assert isinstance(batch, int) and 32 <= batch <= 256
    assert [p.corners() for p in params] == [[1e-4, 1e-2], [0.0, 0.5], [32, 256], ["lstm", "gru"]]


def test_a_log_uniform_search_spreads_over_decades() -> None:
    (lr,) = parse_space([], ["train.learning_rate=loguniform(1e-4,1e-2)"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    decades = [math.floor(math.log10(lr.suggest(study.ask()))) for _ in range(200)]
    assert decades.count(-4) > 60 and decades.count(-3) > 60  # uniform would put 90% in the upper decade


@pytest.mark.parametrize(
    ("grid", "search", "message"),
    [
        (["seed=[1,2]"], ["model.dropout=uniform(0,0.5)"], "not both"),
        ([], ["model.dropout=normal(0,1)"], "is not a distribution"),
        ([], ["model.dropout=uniform(0.5)"], "two numbers, low < high"),
        ([], ["model.dropout=uniform(a,b)"], "two numbers"),
        ([], ["train.learning_rate=loguniform(0,1)"], "low > 0"),
        ([], ["train.batch_size=int(8.5,64)"], "two whole numbers"),
        ([], ["model.cell=choice()"], "at least one value"),
        ([], ["train..dropout=uniform(0,1)"], "is not a dotted key"),
        (["seed"], [], "expected KEY=[v1, v2, ...]"),
        (["seed=[]"], [], "expected KEY=[v1, v2, ...]"),
        ([], [], "sweep needs at least one"),
        ([], ["seed=int(1,3)", "seed=int(4,6)"], "seed is already in the sweep"),
    ],
)
def test_bad_items_are_one_line_config_errors(grid: list[str], search: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")) as caught:
        parse_space(grid, search)
    assert "\n" not in str(caught.value)


def test_a_trial_folder_label_is_short_and_safe_on_any_filesystem() -> None:
    name = label({"model.units": [128, 128], "train.learning_rate": 0.0012345678, "run.root": "a/b c"})
    assert name == "model.units=[128,128]-train.learning_rate=0.00123-run.root=abc"
    assert len(label({f"k{i}": "x" * 30 for i in range(10)})) <= 110
