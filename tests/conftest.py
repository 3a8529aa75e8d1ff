"""Shared fixtures. Every test runs in its own temporary working directory, so nothing lands in the repo."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml

if TYPE_CHECKING:
    from mnist_rnn.train import RunResult

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
EMBEDDED = REPO / "mnist_rnn" / "embedded" / "mnist"


def load_script(name: str) -> Any:
    """scripts/<name>.py as a module (the scripts folder is not a package), registered under its name so its
    dataclasses can look their module up."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests skip, saying why, where TensorFlow sees no GPU (`python -m pytest -m gpu` on a CPU
    machine reports them skipped, not failed)."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        skip = pytest.mark.skip(reason="TensorFlow sees no GPU on this machine")
        for item in gpu_tests:
            item.add_marker(skip)


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


def start_cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """`python -m mnist_rnn ARGS` as its own process (this checkout's code), its output piped as text."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_rnn", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


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


def expected_cpu() -> tuple[str, str]:
    """(model name, widest vector extension) as `lscpu` reports them: a source independent of the package's
    own /proc/cpuinfo reader, for checking what runs and benches record."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, env={"LC_ALL": "C"}).stdout
    facts = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    flags = set(facts.get("Flags", "").split())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return facts["Model name"], vector


def plain_test_images(n: int) -> np.ndarray:
    """The first n MNIST test images as a person's program would hold them: read straight from the IDX file
    (not through the package's loader), row-major pixels / 255, shape (n, 784, 1)."""
    import gzip

    with gzip.open(EMBEDDED / "t10k-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read(16 + n * 784)
    pixels = np.frombuffer(raw, np.uint8, count=n * 784, offset=16)
    return (pixels.astype(np.float32) / 255.0).reshape(n, 784, 1)


def train_run(config: Path | dict, run_dir: Path, *overrides: str, **kwargs: Any) -> RunResult:
    """Train a config file (or a TINY-like dict) into `run_dir` through the public entry point, quietly.

    `kwargs` go to `run_training` (resume=True, stop=StopRequest(...), dataset=...)."""
    from rich.console import Console

    from mnist_rnn.config_files import load_config
    from mnist_rnn.train import run_training

    if isinstance(config, dict):
        path = run_dir.parent / f"{run_dir.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config))
        config = path
    cfg = load_config(config, overrides)
    return run_training(cfg, run_dir, console=Console(quiet=True), command=["test"], **kwargs)


def trained_weights(run_dir: Path, which: str = "last") -> list[np.ndarray]:
    from mnist_rnn import runs

    model, _ = runs.load_checkpoint(run_dir, which)
    return [np.asarray(w) for w in model.get_weights()]


def history_without_time(run_dir: Path) -> list[dict[str, str]]:
    from mnist_rnn import runs

    return [{k: v for k, v in row.items() if k != "seconds"} for row in runs.read_history(run_dir)]


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh generator per test, so a test's inputs do not depend on which tests ran before it."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained on synthetic data (confident, so quantization keeps every class): for export checks."""
    root = tmp_path_factory.mktemp("synthetic-run")
    config = {**TINY, "model": {"cell": "lstm", "units": [16, 16]}}
    return train_run(config, root / "run", "train.epochs=5", "data.limit_test=1000").run_dir


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/smoke.yaml trained on the real MNIST through the CLI, once per session (about 10 s)."""
    from typer.testing import CliRunner

    from mnist_rnn.cli import app

    run = tmp_path_factory.mktemp("smoke") / "run"
    result = CliRunner().invoke(
        app, ["train", "--config", str(CONFIGS / "smoke.yaml"), "--run-dir", str(run)]
    )
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(run)
    return run


def _postgres_bindir() -> Path | None:
    """Where Debian's (or any) PostgreSQL server programs are: initdb on PATH, else the newest version's."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


@pytest.fixture(scope="session")
def postgres_url() -> Any:
    """A real PostgreSQL server of its own (initdb in a temporary folder, a Unix socket, no TCP port), with
    an empty database `sweeps`; the SQLAlchemy URL to reach it. Skipped, saying why, without a server."""
    import tempfile

    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server here (initdb); .ci/run installs Debian's postgresql")
    pytest.importorskip(
        "psycopg2", reason="the postgres extra is not installed (pip install -e '.[postgres]')"
    )
    root = Path(tempfile.mkdtemp(prefix="mnist-rnn-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as Debian's postgres user
        as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(root, 0o755)
        shutil.chown(root, "postgres")
    data, sock = root / "data", root
    run = lambda *cmd: subprocess.run([*as_user, *map(str, cmd)], check=True, capture_output=True)  # noqa: E731
    run(bindir / "initdb", "-D", data, "--auth=trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
    options = f"-k {sock} -c listen_addresses='' -c fsync=off"
    run(bindir / "pg_ctl", "-D", data, "-o", options, "-l", root / "server.log", "-w", "start")
    try:
        run(bindir / "createdb", "-h", sock, "-U", "postgres", "sweeps")
        yield f"postgresql+psycopg2://postgres@/sweeps?host={sock}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
