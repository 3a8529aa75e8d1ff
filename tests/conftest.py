"""Shared fixtures. Every test runs in its own temporary working directory, so nothing lands in the repo."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
EMBEDDED = REPO / "mnist_rnn" / "embedded" / "mnist"


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MNIST_RNN_DATA_DIR", raising=False)
    return tmp_path


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """write_config({"model": {...}}, name="x.yaml") -> path; a dict is dumped, a str written verbatim."""

    def write(content: dict | str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        return path

    return write


# A config small enough to train in a second or two: synthetic data, one tiny LSTM.
TINY = {
    "name": "tiny",
    "seed": 7,
    "data": {"source": "synthetic", "validation": 256, "limit_train": 1024, "limit_test": 256},
    "model": {"cell": "lstm", "units": [16]},
    "train": {"epochs": 2, "batch_size": 64, "learning_rate": 0.01, "eval_batch_size": 256},
    "run": {"tensorboard": False},
}


def tensorboard_scalar_counts(directory: Path) -> dict[tuple[str, int], int]:
    """(tag, step) -> how many times it is in a log directory's event files, read with TensorFlow's own
    iterator. A torn last record (a kill during a flush) ends a file, as in TensorBoard's reader."""
    import tensorflow as tf

    counts: dict[tuple[str, int], int] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        try:
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                for value in event.summary.value:
                    counts[value.tag, event.step] = counts.get((value.tag, event.step), 0) + 1
        except tf.errors.DataLossError:
            pass
    return counts


def each_once(epochs: range, tags: tuple[str, ...]) -> dict[tuple[str, int], int]:
    return {(tag, epoch): 1 for tag in tags for epoch in epochs}


@pytest.fixture
def tiny_config(write_config: Callable[..., Path]) -> Path:
    return write_config(TINY, "tiny.yaml")


@pytest.fixture
def embedded_copy(tmp_path: Path) -> Path:
    """A writable copy of the embedded MNIST folder, for corrupting."""
    target = tmp_path / "mnist-copy"
    shutil.copytree(EMBEDDED, target)
    for f in target.iterdir():
        f.chmod(0o644)
    return target


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained on synthetic data (confident, so quantization keeps every class): for export checks."""
    from rich.console import Console

    from mnist_rnn import runs
    from mnist_rnn.config import load_config
    from mnist_rnn.data import load_dataset
    from mnist_rnn.train import select_device, train

    root = tmp_path_factory.mktemp("synthetic-run")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "model": {"cell": "lstm", "units": [16, 16]}}))
    cfg = load_config(config, ["train.epochs=5", "data.limit_test=1000"])
    run = runs.create_run_dir(root / "run")
    train(cfg, load_dataset(cfg.data, cfg.seed), run, select_device(cfg.train.device), Console(quiet=True))
    return run
