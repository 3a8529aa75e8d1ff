# ruff: noqa: E501  (the case table reads best one case a line)
"""Bad input, everywhere, through the real CLI: configs, data files, paths, run directories.

Every case must give exactly one line on stderr starting with `error:`, the documented exit code, no
traceback, and leave the directory tree exactly as it was (nothing created, nothing damaged).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mnist_rnn.cli import app
from tests.conftest import CONFIGS, EMBEDDED, TINY

runner = CliRunner()
SMOKE = str(CONFIGS / "smoke.yaml")

Case = Callable[[Path], list[str]]


def _config(tmp: Path, text: str, name: str = "bad.yaml") -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def _train(tmp: Path, text: str, *extra: str) -> list[str]:
    return ["train", "--config", _config(tmp, text), *extra]


def _raw_idx(tmp: Path, name: str = "idx") -> Path:
    """An uncompressed copy of MNIST as IDX files (no checksums), to damage."""
    target = tmp / name
    target.mkdir()
    for gz in EMBEDDED.glob("*.gz"):
        (target / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    return target


def _idx_train(folder: Path) -> list[str]:
    return ["train", "-c", SMOKE, "--set", "data.source=idx", "--set", f"data.dir={folder}"]


def _damage(path: Path, fn: Callable[[bytes], bytes]) -> None:
    path.write_bytes(fn(path.read_bytes()))


def _fake_run(tmp: Path, config: dict | None = None, state: str | None = '{"epoch": 1, "step": 0}') -> Path:
    """A run directory as train leaves it, with a stand-in model file (enough for these checks)."""
    run = tmp / "run"
    (run / "checkpoints" / "last").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config or TINY))
    (run / "checkpoints" / "last" / "model.keras").write_bytes(b"PK not really a model")
    if state is not None:
        (run / "checkpoints" / "last" / "state.json").write_text(state)
    return run


def _locked_run(tmp: Path) -> list[str]:
    run = _fake_run(tmp, {**TINY, "train": {**TINY["train"], "epochs": 5}})
    (run / ".lock").write_text(str(_sleeper().pid))
    return ["train", "--resume", str(run)]


_SLEEPERS: list[subprocess.Popen[bytes]] = []


def _sleeper() -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    _SLEEPERS.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _stop_sleepers() -> Iterator[None]:
    yield
    while _SLEEPERS:
        proc = _SLEEPERS.pop()
        proc.kill()
        proc.wait()


def _with_sums(tmp: Path) -> Path:
    folder = _raw_idx(tmp)
    sums = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in sorted(folder.iterdir())]
    (folder / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    _damage(folder / "t10k-labels-idx1-ubyte", lambda b: b[:-1] + bytes([(b[-1] + 1) % 10]))
    return folder


# (id, exit code, text the message must contain, how to build the command line in a temp dir)
CASES: list[tuple[str, int, str, Case]] = [
    # --- configs
    ("unknown key", 2, "model.colour: unknown key", lambda t: _train(t, "model:\n  colour: red\n")),
    ("wrong type", 2, "train.batch_size: must be a valid integer", lambda t: _train(t, "train:\n  batch_size: x\n")),
    ("negative units", 2, "model.units[1]: must be a positive integer, got -3",
     lambda t: _train(t, "model:\n  units: [64, -3]\n")),
    ("bad enum", 2, "model.cell: must be 'lstm', 'gru', 'simple_rnn' or 'janet'",
     lambda t: _train(t, "model:\n  cell: x\n")),
    ("permutation without a permuted layout", 2, "data.permutation_seed: only permuted layouts",
     lambda t: _train(t, "data:\n  layout: pixels\n  permutation_seed: 3\n")),
    ("chrono on a gru", 2, "model.forget_bias: model.cell: gru has no forget gate",
     lambda t: _train(t, "model:\n  cell: gru\n  forget_bias: chrono\n")),
    ("bad layout", 2, "data.layout: must be 'rows', 'columns', 'pixels' or 'permuted_pixels'",
     lambda t: _train(t, "data:\n  layout: permuted\n")),
    ("bad yaml", 2, "invalid YAML", lambda t: _train(t, "model: [\n")),
    ("empty file", 2, "the config file is empty", lambda t: _train(t, "")),
    ("top level list", 2, "the top level must be a mapping", lambda t: _train(t, "- 1\n")),
    ("not utf-8", 2, "cannot read config file",
     lambda t: ["train", "-c", str((t / "b.yaml").write_bytes(b"\xff\xfe\x00bad") and t / "b.yaml")]),
    ("missing config", 2, "config file not found", lambda t: ["train", "-c", str(t / "nope.yaml")]),
    ("config is a directory", 2, "is a directory", lambda t: ["train", "-c", str(t)]),
    ("missing base", 2, "base: file", lambda t: _train(t, "base: nowhere.yaml\n")),
    ("base cycle", 2, "include each other",
     lambda t: [_config(t, "base: bad.yaml\n", "a.yaml"), *_train(t, "base: a.yaml\n")][1:]),
    ("out of range", 2, "model.dropout: must be less than 1", lambda t: _train(t, "model:\n  dropout: 2\n")),
    ("limit beyond data", 2, "data.limit_train: must be at most 55000",
     lambda t: _train(t, "data:\n  limit_train: 59000\n")),
    ("patience without validation", 2, "data.validation is 0",
     lambda t: _train(t, "data:\n  validation: 0\ntrain:\n  early_stopping_patience: 2\n")),
    ("set unknown key", 2, "--set train.colour=red: train.colour: unknown key",
     lambda t: _train(t, "{}\n", "--set", "train.colour=red")),
    ("set bad yaml", 2, "--set model.units=[1,: invalid YAML", lambda t: _train(t, "{}\n", "--set", "model.units=[1,")),
    ("set without value", 2, "expected KEY=VALUE", lambda t: _train(t, "{}\n", "--set", "model.units")),
    ("no config at all", 2, "train needs --config FILE", lambda t: ["train"]),
    ("chunks without state", 2, "data.chunk_steps: chunks carry state", lambda t: ["train", "-c", SMOKE, "--set", "data.chunk_steps=7"]),
    ("chunks not dividing", 2, "must divide the 784 steps of layout pixels",
     lambda t: ["train", "-c", SMOKE, "--set", "train.stateful=true", "--set", "data.layout=pixels", "--set", "data.chunk_steps=100"]),
    ("stateful bidirectional", 2, "model.bidirectional: cannot be stateful",
     lambda t: ["train", "-c", SMOKE, "--set", "train.stateful=true", "--set", "model.bidirectional=true"]),
    # --- data files
    ("idx without folder", 2, "neither data.dir nor $MNIST_RNN_DATA_DIR",
     lambda t: ["train", "-c", SMOKE, "--set", "data.source=idx"]),
    ("idx folder missing", 2, "not a directory", lambda t: _idx_train(t / "absent")),
    ("idx folder is a file", 2, "not a directory", lambda t: _idx_train(Path(_config(t, "x", "afile")))),
    ("idx file missing", 2, "no t10k-labels-idx1-ubyte[.gz] found",
     lambda t: [(_raw_idx(t) / "t10k-labels-idx1-ubyte").unlink(), *_idx_train(t / "idx")][1:]),
    ("truncated gzip", 2, "truncated or corrupt gzip",
     lambda t: [shutil.copytree(EMBEDDED, t / "gz") and (t / "gz" / "SHA256SUMS").unlink(),
                _damage(t / "gz" / "t10k-images-idx3-ubyte.gz", lambda b: b[: len(b) // 2]),
                *_idx_train(t / "gz")][2:]),
    ("wrong magic", 2, "wrong IDX magic number",
     lambda t: [_damage(_raw_idx(t) / "train-images-idx3-ubyte", lambda b: b"\x00\x00\x08\x01" + b[4:]),
                *_idx_train(t / "idx")][1:]),
    ("wrong size", 2, "promises",
     lambda t: [_damage(_raw_idx(t) / "t10k-images-idx3-ubyte", lambda b: b[:-784]), *_idx_train(t / "idx")][1:]),
    ("label out of range", 2, "label 12 is out of range",
     lambda t: [_damage(_raw_idx(t) / "train-labels-idx1-ubyte", lambda b: b[:8] + b"\x0c" + b[9:]),
                *_idx_train(t / "idx")][1:]),
    ("count mismatch", 2, "10000 images but 9999 labels",
     lambda t: [_damage(_raw_idx(t) / "t10k-labels-idx1-ubyte", lambda b: b[:4] + (9999).to_bytes(4, "big") + b[8:-1]),
                *_idx_train(t / "idx")][1:]),
    ("checksum mismatch", 2, "checksum mismatch", lambda t: _idx_train(_with_sums(t))),
    # --- paths
    ("run dir is a file", 2, "exists and is not a directory",
     lambda t: ["train", "-c", SMOKE, "--run-dir", _config(t, "x", "afile")]),
    ("run dir not empty", 2, "run directory is not empty",
     lambda t: [(t / "full").mkdir(), "train", "-c", SMOKE, "--run-dir", str(Path(_config(t, "x", "full/k")).parent)][1:]),
    ("run root is a file", 2, "run.root exists and is not a directory",
     lambda t: ["train", "-c", SMOKE, "--set", f"run.root={_config(t, 'x', 'afile')}"]),
    ("run dir unwritable", 2, "cannot create the run directory",
     lambda t: ["train", "-c", SMOKE, "--run-dir", "/proc/mnist-rnn-cannot-exist/run"]),
    # --- run directories
    ("eval missing dir", 2, "no such run directory", lambda t: ["eval", str(t / "absent")]),
    ("eval foreign dir", 2, "not a run directory", lambda t: ["eval", str(t)]),
    ("eval without checkpoint", 2, "no 'best' checkpoint", lambda t: ["eval", str(_fake_run(t))]),
    ("eval val without validation", 2, "held out no validation images",
     lambda t: ["eval", str(_fake_run(t, {**TINY, "data": {**TINY["data"], "validation": 0}})), "--split", "val"]),
    ("eval corrupt checkpoint", 2, "no loadable 'last' checkpoint",
     lambda t: ["eval", str(_fake_run(t)), "--checkpoint", "last"]),
    ("resume missing checkpoint", 2, "no 'last' checkpoint",
     lambda t: [shutil.rmtree(_fake_run(t) / "checkpoints"), "train", "--resume", str(t / "run")][1:]),
    ("resume damaged state", 2, "checkpoint state cannot be read",
     lambda t: ["train", "--resume", str(_fake_run(t, state="{not json"))]),
    ("resume changed config", 2, "differs from the run's saved config in model.units",
     lambda t: ["train", "--resume", str(_fake_run(t)), "--set", "model.units=[4]"]),
    ("resume finished run", 2, "already finished 2 of 2 epochs",
     lambda t: ["train", "--resume", str(_fake_run(t, state='{"epoch": 2, "step": 0}'))]),
    ("resume with run dir", 2, "drop --run-dir and --name",
     lambda t: ["train", "--resume", str(_fake_run(t)), "--run-dir", str(t / "x")]),
    ("resume a run being written", 2, "is writing this run", _locked_run),
    # --- predict and export
    ("predict a text file", 2, "not an image (PNG, JPEG, ...) or IDX file",
     lambda t: ["predict", str(_fake_run(t)), _config(t, "hello", "digit.png")]),
    ("predict a truncated png", 2, "digit.png:",
     lambda t: [(t / "digit.png").write_bytes(_png_bytes()[:400]), "predict", str(_fake_run(t)), str(t / "digit.png")][1:]),
    ("predict a missing image", 2, "file not found", lambda t: ["predict", str(_fake_run(t)), str(t / "nope.png")]),
    ("predict a directory", 2, "is a directory", lambda t: ["predict", str(_fake_run(t)), str(t)]),
    ("predict with a foreign source", 2, "not a run directory",
     lambda t: [(t / "x.png").write_bytes(_png_bytes()), "predict", str(t), str(t / "x.png")][1:]),
    ("predict with a missing source", 2, "no such run directory", lambda t: ["predict", str(t / "gone"), "x.png"]),
    ("export foreign dir", 2, "not a run directory", lambda t: ["export", str(t), "--format", "keras"]),
    ("export quantized keras", 2, "tflite only",
     lambda t: ["export", str(_fake_run(t)), "--format", "keras", "--quantize", "dynamic"]),
    ("export without checkpoint", 2, "no 'best' checkpoint", lambda t: ["export", str(_fake_run(t)), "--format", "keras"]),
]  # fmt: skip


def _png_bytes() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()  # noise: compresses badly, so cutting the file really truncates the pixel data
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(
        buf, format="PNG"
    )
    return buf.getvalue()


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.read_bytes() if p.is_file() else b"")
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize(("code", "expected", "build"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(code: int, expected: str, build: Case, tmp_path: Path) -> None:
    args = build(tmp_path)
    before = _snapshot(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert _snapshot(tmp_path) == before  # nothing created, nothing changed
