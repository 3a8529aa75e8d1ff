"""The epoch axis of curves.png and compare.png shows whole epochs, for a run of one epoch too; the
learning-rate axis one tick for a rate that never changes; errors.png names the split its digits come
from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from mnist_rnn.plots import epoch_axis, plot_errors, rate_axis


@pytest.mark.parametrize("epochs", [[1], [1, 2], list(range(1, 16))])
def test_the_epoch_axis_ticks_whole_epochs_that_cover_the_run(epochs: list[int]) -> None:
    ax = Figure(figsize=(4, 3)).subplots()
    ax.plot(epochs, [0.5] * len(epochs), "o-")
    epoch_axis(ax)
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert low < min(epochs) and max(epochs) < high
    assert ax.get_xlabel() == "epoch"


@pytest.mark.parametrize("rates", [[2e-3], [1e-3] * 5])
def test_a_rate_that_never_changes_gets_one_tick_at_its_value(rates: list[float]) -> None:
    ax = Figure(figsize=(4, 3)).subplots()
    ax.plot(range(1, len(rates) + 1), rates, ".:")
    rate_axis(ax)
    low, high = ax.get_ylim()
    assert list(ax.get_yticks()) == [rates[0]]
    assert low <= 0 and high >= 2 * rates[0]  # from zero: the value reads as a rate, not a small wiggle
    assert ax.get_ylabel() == "learning rate"


def test_a_changing_rate_keeps_matplotlibs_ticks() -> None:
    ax = Figure(figsize=(4, 3)).subplots()
    ax.plot([1, 2, 3], [1e-3, 5e-4, 2.5e-4], ".:")
    rate_axis(ax)
    low, high = ax.get_ylim()
    assert len([t for t in ax.get_yticks() if low <= t <= high]) > 2
    assert low <= 2.5e-4 and high >= 1e-3


@pytest.mark.parametrize(("split", "named"), [("test", "test"), ("val", "validation")])
def test_errors_png_names_the_split_it_shows(
    split: str, named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`eval --split val` draws errors.png from validation images: its title must not say test digits."""
    figures: list[Figure] = []
    monkeypatch.setattr("mnist_rnn.plots.save", lambda fig, path: figures.append(fig) or path)
    labels = np.array([0, 1, 2, 3])
    probs = np.eye(10, dtype=np.float32)[[1, 1, 2, 3]]  # one wrong: a 0 read as a 1
    plot_errors(np.zeros((4, 28, 28), np.uint8), probs, labels, tmp_path / "errors.png", split=split)
    title = figures[0].get_suptitle()
    assert title == f"The 1 most confidently wrong of 4 {named} digits"
