"""The pictures a person looks at, drawn with matplotlib (Agg, no display) from a run's own numbers.

    curves.png            loss and accuracy per epoch, train vs validation, the best epoch marked, the
                          learning rate on a second axis; rewritten after every epoch (atomically)
    confusion_matrix.png  eval: counts, rows true and columns predicted, per-class accuracy beside
    errors.png            eval: the most confidently wrong test digits, true and predicted class
    explain.png           eval --explain N: N test digits and the class probabilities after each step
    compare.png           runs compare: validation accuracy curves of several runs on one axis
    augment.png           train with data.augment: training digits as drawn, beside augmentations of them

Every picture is written to a temporary sibling and renamed into place, so a reader never sees half a PNG.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_rnn.runs import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVES, CONFUSION, ERRORS, EXPLAIN, COMPARE, AUGMENT = (
    "curves.png", "confusion_matrix.png", "errors.png", "explain.png", "compare.png", "augment.png",
)  # fmt: skip
DPI = 100


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _column(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """A history column as floats; empty cells (no validation) become NaN."""
    return np.array([float(row[key]) if row.get(key) not in (None, "") else np.nan for row in history])


def epoch_axis(ax: Any) -> None:
    """Label the x axis "epoch" with whole-epoch ticks. A run of one epoch has one x value, around which
    Matplotlib spans a tenth of an epoch and the integer locator, finding one integer, fell back to ticks
    like 0.945 and 1.020: there the axis is one epoch wide with its single tick."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    low, high = ax.get_xlim()
    if high - low < 1:
        middle = round((low + high) / 2)
        ax.set_xlim(middle - 0.5, middle + 0.5)
        ax.set_xticks([middle])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def rate_axis(ax: Any) -> None:
    """Label the learning-rate axis. A rate that never changes (no schedule, or one epoch) spans a few
    percent around its value, where Matplotlib drew nine ticks (0.001900 ... 0.002100) for one number:
    there the axis runs from 0 to twice the rate with the one tick at the rate."""
    ax.set_ylabel("learning rate", color="tab:gray")
    rates = np.concatenate([line.get_ydata() for line in ax.get_lines()]).astype(float)
    rates = rates[np.isfinite(rates)]
    if rates.size and rates.min() == rates.max() and rates[0] > 0:
        ax.set_ylim(0, 2 * rates[0])
        ax.set_yticks([rates[0]])


def plot_curves(history: Sequence[dict[str, Any]], best_epoch: int, path: Path) -> Path:
    """Loss (with the learning rate on a second axis) and accuracy per epoch."""
    fig = _figure(10, 4)
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = _column(history, "epoch")
    for ax, key, label in ((loss_ax, "loss", "loss"), (acc_ax, "accuracy", "accuracy")):
        ax.plot(epochs, _column(history, key), "o-", color="tab:blue", label=f"train {label}", ms=3)
        if not np.isnan(_column(history, f"val_{key}")).all():
            ax.plot(
                epochs, _column(history, f"val_{key}"), "o-", color="tab:orange", label=f"val {label}", ms=3
            )
        if best_epoch:
            ax.axvline(best_epoch, color="tab:green", ls="--", lw=1, label=f"best epoch ({best_epoch})")
        epoch_axis(ax)
        ax.set_title(label)
        ax.grid(alpha=0.3)
    lr_ax = loss_ax.twinx()
    lr_ax.plot(epochs, _column(history, "lr"), ".:", color="tab:gray", lw=1, ms=4, label="learning rate")
    rate_axis(lr_ax)
    lines = loss_ax.get_legend_handles_labels()[0] + lr_ax.get_legend_handles_labels()[0]
    loss_ax.legend(lines, [str(line.get_label()) for line in lines], fontsize=8, loc="upper right")
    acc_ax.legend(fontsize=8, loc="lower right")
    return save(fig, path)


def plot_confusion(
    confusion: Sequence[Sequence[int]], per_class: Sequence[float], title: str, path: Path
) -> Path:
    counts = np.asarray(confusion)
    fig = _figure(7, 6)
    ax = fig.subplots()
    shown = np.log1p(counts)  # the diagonal dwarfs the errors: a log scale keeps both readable
    ax.imshow(shown, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
        if value:
            color = "white" if shown[row, col] > shown.max() * 0.6 else "black"
            ax.text(col, row, str(value), ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(10), [str(c) for c in range(10)])
    ax.set_yticks(range(10), [f"{c}  ({acc:.1%})" for c, acc in enumerate(per_class)])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class  (per-class accuracy)")
    ax.set_title(f"{title}: {int(counts.sum()):,} images, {np.trace(counts) / counts.sum():.2%} correct")
    return save(fig, path)


def most_confident_errors(probs: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the wrong predictions, most confident first (at most n)."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    return wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:n]


SPLIT_NAMES = {"val": "validation"}  # how a title names a split


def plot_errors(
    images: np.ndarray, probs: np.ndarray, labels: np.ndarray, path: Path, n: int = 24, split: str = "test"
) -> Path:
    """The most confidently wrong digits: images (N, 28, 28), probs (N, 10), labels (N,) of `split`."""
    chosen = most_confident_errors(probs, labels, n)
    cols = 8
    rows = max(1, -(-len(chosen) // cols))
    fig = _figure(cols * 1.3, rows * 1.55 + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, chosen, strict=False):
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"true {labels[i]} → {probs[i].argmax()}\n{probs[i].max():.0%}", fontsize=8)
    fig.suptitle(
        f"The {len(chosen)} most confidently wrong of {len(labels):,} {SPLIT_NAMES.get(split, split)} digits"
        if len(chosen)
        else "No errors",
        fontsize=10,
    )
    return save(fig, path)


def plot_explain(images: np.ndarray, steps: np.ndarray, labels: np.ndarray, unit: str, path: Path) -> Path:
    """For each digit, the image and the class probabilities after each step: steps (N, T, 10)."""
    n, t = len(images), steps.shape[1]
    fig = _figure(10, 1.9 * n + 0.5)
    axes = np.asarray(fig.subplots(n, 2, width_ratios=[1, 5], squeeze=False))
    for k in range(n):
        image_ax, heat_ax = axes[k]
        image_ax.imshow(images[k], cmap="gray", vmin=0, vmax=255)
        image_ax.axis("off")
        final = int(steps[k, -1].argmax())
        image_ax.set_title(f"true {labels[k]}, read {final}", fontsize=9)
        heat_ax.imshow(steps[k].T, aspect="auto", cmap="Blues", vmin=0, vmax=1, origin="lower",
                       extent=(0.5, t + 0.5, -0.5, 9.5))  # fmt: skip
        heat_ax.plot(np.arange(1, t + 1), steps[k, :, final] * 9, color="tab:red", lw=1.5)
        heat_ax.set_yticks(range(10))
        heat_ax.set_ylabel("class", fontsize=8)
    axes[-1, 1].set_xlabel(f"{unit} read (red: the final class's probability, 0 at the bottom, 1 at the top)")
    fig.suptitle("How the prediction forms as the network reads each digit", fontsize=10)
    return save(fig, path)


def plot_compare(curves: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> Path:
    """Validation accuracy (or training accuracy without validation) per epoch, one line per run."""
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    for name, history in curves.items():
        val = _column(history, "val_accuracy")
        key = "accuracy" if np.isnan(val).all() else "val_accuracy"
        ax.plot(_column(history, "epoch"), _column(history, key), "o-", ms=3, label=f"{name} ({key})")
    epoch_axis(ax)
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Validation accuracy per epoch")
    return save(fig, path)


def plot_augment(images: np.ndarray, grid: np.ndarray, settings: str, path: Path) -> Path:
    """Each of the (N, 28, 28) uint8 training `images` in its first column, then (N, K, 28, 28) `grid`:
    K augmentations of it, drawn as training draws them."""
    n, k = grid.shape[:2]
    fig = _figure((k + 1) * 1.0, n * 1.0 + 0.7)
    axes = np.asarray(fig.subplots(n, k + 1, squeeze=False))
    for row in range(n):
        for col in range(k + 1):
            ax = axes[row, col]
            ax.imshow(images[row] if col == 0 else grid[row, col - 1], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("as drawn", fontsize=8)
    for col in range(1, k + 1):
        axes[0, col].set_title(f"draw {col}", fontsize=8)
    fig.suptitle(f"Training digits under data.augment\n{settings}", fontsize=9)
    return save(fig, path)
