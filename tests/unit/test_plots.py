"""The epoch axis of curves.png and compare.png shows whole epochs, for a run of one epoch too."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from mnist_rnn.plots import epoch_axis


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
