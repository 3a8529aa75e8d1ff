"""More than one device without a GPU: `train.strategy: mirrored` on two logical CPU devices (in a
subprocess, so the rest of the suite keeps one device), and the refusals a strategy or a GPU-only option
gets on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_rnn import artefacts, export
from mnist_rnn.config_files import load_config
from mnist_rnn.data import load_dataset
from mnist_rnn.errors import ConfigError, DeviceError
from mnist_rnn.evaluate import evaluate_run
from mnist_rnn.trained import open_model
from tests.conftest import REPO, TINY, train_run

# Trains TINY twice in one process with two logical CPUs: once on one device, once mirrored over both,
# and prints both runs' histories and final weights' checksums as JSON.
_TWO_CPUS = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from mnist_rnn import runs
from mnist_rnn import artefacts, export
from mnist_rnn.config_files import load_config
from mnist_rnn.data import load_dataset
from mnist_rnn.evaluate import evaluate_run
from mnist_rnn.trained import open_model
from mnist_rnn.train import run_training
from rich.console import Console
out = {}
# The devices are named, so the check is the same on a machine with GPUs (where "every GPU" is the default)
for strategy, overrides in (("none", ["train.device=cpu"]),
                            ("mirrored", ["train.devices=['/cpu:0', '/cpu:1']"])):
    cfg = load_config(sys.argv[1], [f"train.strategy={strategy}", *overrides])
    result = run_training(cfg, runs.Path(sys.argv[2]) / strategy, console=Console(quiet=True))
    model, _ = runs.load_checkpoint(result.run_dir, "last")
    out[strategy] = {
        "history": runs.read_history(result.run_dir),
        "weights": [w.tolist() for w in model.get_weights()],
        "execution": result.metrics["execution"],
    }
print(json.dumps(out))
"""


def test_mirrored_on_two_cpus_matches_one_device(tmp_path: Path) -> None:
    import numpy as np
    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "epochs": 2, "batch_size": 64}}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _TWO_CPUS, str(config), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    runs_ = json.loads(done.stdout.strip().splitlines()[-1])
    one, two = runs_["none"], runs_["mirrored"]
    assert two["execution"]["replicas"] == 2 and one["execution"]["replicas"] == 1
    for a, b in zip(
        one["history"], two["history"], strict=True
    ):  # 2 epochs x 16 steps of the global batch 64
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-5), key
    for wa, wb in zip(one["weights"], two["weights"], strict=True):
        np.testing.assert_allclose(np.asarray(wa), np.asarray(wb), atol=1e-5)
    # and the mirrored run is an ordinary run to eval, export and predict on one device
    mirrored = tmp_path / "mirrored"
    metrics = json.loads((mirrored / "metrics.json").read_text())
    assert evaluate_run(mirrored)["accuracy"] == pytest.approx(metrics["test_accuracy"])
    manifest = export.export_run(mirrored, "saved_model")
    assert manifest["parity"]["ok"]
    cfg = load_config(mirrored / "config.yaml")
    x = load_dataset(cfg.data, cfg.seed).test.x[:4]
    np.testing.assert_allclose(
        open_model(mirrored).predictor()(x), artefacts.load_artefact(Path(manifest["path"]))[1](x), atol=1e-5
    )


@pytest.mark.gpu
def test_on_a_gpu_cudnn_mixed_precision_and_the_gpu_are_recorded(tmp_path: Path) -> None:
    import keras

    gru = {**TINY, "model": {"cell": "gru", "units": [16]}}
    metrics = train_run(gru, tmp_path / "run", "train.mixed_precision=true", "train.device=gpu").metrics
    assert metrics["gpu"] and metrics["cudnn"] == {"used": True, "blockers": []}
    # what the report says is what runs: the trained model's GPU graph holds a cuDNN RNN op
    assert _runs_cudnn(tmp_path / "run") is True
    assert "gpu" in (tmp_path / "run" / "command.txt").read_text()
    assert metrics["test_accuracy"] > 0.5
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    blocked = train_run(gru, tmp_path / "run2", "model.recurrent_dropout=0.1", "train.epochs=1").metrics
    assert blocked["cudnn"]["used"] is False and "recurrent_dropout" in blocked["cudnn"]["blockers"][0]
    assert _runs_cudnn(tmp_path / "run2") is False


def _runs_cudnn(run_dir: Path) -> bool:
    """Whether the run's model, called on the GPU, puts a cuDNN RNN op into its graph (observed, not
    derived from the config)."""
    import tensorflow as tf

    from mnist_rnn import runs

    model, _ = runs.load_checkpoint(run_dir, "last")
    shape = (2, *model.input_shape[1:])
    with tf.device("/GPU:0"):
        graph = (
            tf.function(lambda x: model(x, training=True))
            .get_concrete_function(tf.TensorSpec(shape, tf.float32))
            .graph
        )
    ops = {op.type for op in graph.get_operations()}
    ops |= {node.op for f in graph.as_graph_def().library.function for node in f.node_def}
    return any(op.startswith("CudnnRNN") for op in ops)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.strategy=mirrored", "train.stateful=true"], "train.stateful: cannot run under"),
        (["train.strategy=mirrored", "train.jit_compile=on"], "keras#18627"),
        (["train.strategy=mirrored", "model.lstm_kernel=fused"], "fused is a single-device CPU kernel"),
        (["train.devices=['/gpu:0']"], "train.devices: is read by train.strategy: mirrored only"),
    ],
)
def test_combinations_a_strategy_cannot_run_are_config_errors(overrides: list[str], expected: str) -> None:
    from tests.conftest import CONFIGS

    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "default.yaml", overrides)
    assert expected in str(info.value)


def test_a_device_that_does_not_exist_and_mixed_precision_on_a_cpu_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match=r"train.devices: /gpu:7 not found; this machine has CPU:0"):
        train_run(TINY, tmp_path / "a", "train.strategy=mirrored", "train.devices=['/gpu:7']")
    with pytest.raises(ConfigError, match="train.mixed_precision: needs a GPU"):  # cpu named: so on any host
        train_run(TINY, tmp_path / "b", "train.mixed_precision=true", "train.device=cpu")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before any write


def test_a_cpu_run_records_no_gpu_and_no_cudnn(tmp_path: Path) -> None:
    metrics = train_run(TINY, tmp_path / "run", "train.epochs=1", "train.device=cpu").metrics
    assert metrics["gpu"] is None and metrics["cudnn"] is None
    assert metrics["execution"]["replicas"] == 1


def test_tf_config_names_the_chief_and_a_missing_one_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mnist_rnn.config import TrainConfig
    from mnist_rnn.distribute import cluster_task, is_chief, make_strategy

    multi = TrainConfig(strategy="multi_worker")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="reads the cluster from TF_CONFIG, which is not set"):
        make_strategy(multi)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        is_chief(multi)
    workers = {"worker": ["a:1", "b:2", "c:3"]}
    for index, chief in ((0, True), (2, False)):
        monkeypatch.setenv(
            "TF_CONFIG", json.dumps({"cluster": workers, "task": {"type": "worker", "index": index}})
        )
        assert is_chief(multi) is chief and cluster_task() == ("worker", index, 3)
    with_chief = {"chief": ["x:0"], **workers}
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}})
    )
    assert not is_chief(multi)  # a cluster that names a chief: worker 0 is an ordinary worker
    assert is_chief(TrainConfig())  # a single process always writes its run


def test_cudnn_eligibility_is_decided_from_the_config_alone() -> None:
    from mnist_rnn.config import ModelConfig
    from mnist_rnn.distribute import cudnn_report

    assert cudnn_report(ModelConfig(), "/GPU:0") == {"used": True, "blockers": []}
    dropped = cudnn_report(ModelConfig(recurrent_dropout=0.2), "/GPU:0")
    assert (
        dropped is not None and dropped["used"] is False and "recurrent_dropout=0.2" in dropped["blockers"][0]
    )
    janet = cudnn_report(ModelConfig(cell="janet"), "/GPU:0")
    assert janet is not None and janet["blockers"] == ["model.cell: janet has no cuDNN kernel"]
    assert cudnn_report(ModelConfig(), "/CPU:0") is None


def test_the_mixed_precision_policy_computes_in_float16_with_a_float32_output() -> None:
    import keras

    from mnist_rnn.config import ModelConfig
    from mnist_rnn.distribute import precision
    from mnist_rnn.model import build_model

    with precision(mixed=True):
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        model = build_model(ModelConfig(units=(8,)), (28, 28))
    assert keras.mixed_precision.global_policy().name == "float32"  # restored: the policy is global
    recurrent, head = model.get_layer("lstm_0"), model.get_layer("probabilities")
    assert recurrent.compute_dtype == "float16" and recurrent.variable_dtype == "float32"
    assert head.compute_dtype == "float32"  # softmax and the loss stay in float32
    assert model.output.dtype == "float32"


def test_a_deterministic_run_turns_tf32_off() -> None:
    """The exactness checks (1e-5 and tighter) hold on an Ampere GPU only in full float32: TF32,
    TensorFlow's default there, is not turned off by op determinism alone."""
    import tensorflow as tf

    from mnist_rnn.execution import seed_everything

    try:
        seed_everything(1, deterministic=True)
        assert tf.config.experimental.tensor_float_32_execution_enabled() is False
        seed_everything(1, deterministic=False)
        assert tf.config.experimental.tensor_float_32_execution_enabled() is True
    finally:
        seed_everything(1, deterministic=True)
