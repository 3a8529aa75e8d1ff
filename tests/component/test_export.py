"""Export: every format written, reloaded in its own runtime and held to the parity bounds."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_rnn import artefacts, export, runs
from mnist_rnn.artefacts import ExportFormat, tflite_interpreter
from mnist_rnn.cli.app import exit_code
from mnist_rnn.config_files import load_config
from mnist_rnn.data import load_dataset
from mnist_rnn.errors import ExportError, UsageError
from mnist_rnn.model import build_twin
from mnist_rnn.trained import keras_predict


@pytest.mark.parametrize("fmt", ["saved_model", "keras", "tflite", "onnx"])
def test_each_format_round_trips_within_its_bound(synthetic_run: Path, fmt: str) -> None:
    if fmt == "onnx":
        pytest.importorskip("tf2onnx")
    manifest = export.export_run(synthetic_run, fmt)
    folder = synthetic_run / "export" / fmt
    saved = json.loads((folder / artefacts.MANIFEST).read_text())
    assert saved["parity"]["ok"] and saved["parity"]["images"] == 1000
    assert saved["parity"]["max_abs_prob_diff"] <= artefacts.FORMATS[fmt].max_prob_diff
    assert saved["test_accuracy"] == pytest.approx(saved["keras_test_accuracy"], abs=1e-3)
    assert all((folder / name).exists() and size > 0 for name, size in saved["files"].items())
    assert saved["source_checkpoint"].endswith("checkpoints/best")
    assert manifest["path"] == str(folder)
    # and the folder serves through the shared loader that predict uses
    _, run_artefact = artefacts.load_artefact(folder)
    cfg = load_config(synthetic_run / "config.yaml")
    x = load_dataset(cfg.data, cfg.seed).test.x[:5]
    model, _ = runs.load_checkpoint(synthetic_run, "best")
    np.testing.assert_allclose(
        run_artefact(x), keras_predict(model, x, 5), atol=artefacts.FORMATS[fmt].max_prob_diff
    )


@pytest.mark.slow  # 15 s; the plain TFLite round trip and the broken-bound check stay in the default suite
def test_dynamic_quantized_tflite_keeps_the_class(synthetic_run: Path) -> None:
    manifest = export.export_run(synthetic_run, "tflite", quantize="dynamic")
    assert manifest["parity"]["same_class_fraction"] >= export.QUANTIZED_AGREEMENT
    files = manifest["files"]
    float_size = export.export_run(synthetic_run, "tflite")["files"]["model.tflite"]
    assert files["model_dynamic.tflite"] < float_size  # int8 weights


def test_tflite_uses_builtin_ops_only(synthetic_run: Path) -> None:
    export.export_run(synthetic_run, "tflite")
    interpreter = tflite_interpreter(synthetic_run / "export" / "tflite" / "model.tflite")
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert ops and not ops & {"CUSTOM", "FlexDelegate", "WHILE", "READ_VARIABLE"}, ops


def test_saved_model_graph_is_cpu_safe_and_the_twin_disables_cudnn(synthetic_run: Path) -> None:
    import tensorflow as tf

    model, _ = runs.load_checkpoint(synthetic_run, "best")
    cfg = load_config(synthetic_run / "config.yaml")
    twin = build_twin(cfg.model, model.get_weights(), (28, 28), cpu_safe=True)  # as export builds it
    recurrent = [layer for layer in twin.layers if hasattr(layer, "use_cudnn")]
    assert recurrent and all(layer.use_cudnn is False for layer in recurrent)

    export.export_run(synthetic_run, "saved_model")
    loaded = tf.saved_model.load(str(synthetic_run / "export" / "saved_model" / "saved_model"))
    graph = loaded.signatures["serving_default"].graph.as_graph_def()
    ops = {node.op for node in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    assert "MatMul" in ops  # the real computation is in there ...
    assert not [op for op in ops if "Cudnn" in op]  # ... with no GPU-only kernel (CudnnRNNV3 & co.)


def test_saved_model_serves_in_a_fresh_process_that_imports_only_tensorflow(
    synthetic_run: Path, tmp_path: Path
) -> None:
    export.export_run(synthetic_run, "saved_model")
    cfg = load_config(synthetic_run / "config.yaml")
    x = load_dataset(cfg.data, cfg.seed).test.x[:50]
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "out = serve(sequence=tf.constant(np.load(sys.argv[2])))\n"
        "np.save(sys.argv[3], out['probabilities'].numpy())\n"
        "assert out['class_ids'].dtype == tf.int32\n"
        "assert not any(m.startswith('mnist_rnn') for m in sys.modules)\n"
    )
    folder = synthetic_run / "export" / "saved_model" / "saved_model"
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(tmp_path / "x.npy"), str(tmp_path / "p.npy")],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    model, _ = runs.load_checkpoint(synthetic_run, "best")
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), keras_predict(model, x, 50), atol=1e-5)


def test_a_broken_bound_exits_1_with_the_figures_and_keeps_the_artefact(
    synthetic_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strict = dataclasses.replace(artefacts.FORMATS[ExportFormat.tflite], max_prob_diff=0.0)
    monkeypatch.setitem(
        artefacts.FORMATS, ExportFormat.tflite, strict
    )  # TFLite never matches to the last bit
    with pytest.raises(ExportError) as info:
        export.export_run(synthetic_run, "tflite", out=tmp_path / "strict")
    assert exit_code(info.value) == 1 and "parity check failed: max |Δprob|" in str(info.value)
    assert json.loads((tmp_path / "strict" / artefacts.MANIFEST).read_text())["parity"]["ok"] is False


def test_bad_requests_are_exit_2(synthetic_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError) as info:
        export.export_run(synthetic_run, "keras", quantize="dynamic")
    assert exit_code(info.value) == 2 and "--format tflite only" in str(info.value)
    with pytest.raises(UsageError) as info:
        export.export_run(synthetic_run, "pickle")
    assert exit_code(info.value) == 2 and "saved_model, keras, tflite, onnx" in str(info.value)
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if the onnx extra were not installed
    with pytest.raises(UsageError) as info:
        export.export_run(synthetic_run, "onnx", out=synthetic_run / "export" / "no-onnx")
    assert exit_code(info.value) == 2 and "pip install 'mnist-rnn[onnx]'" in str(info.value)
    assert not (synthetic_run / "export" / "no-onnx").exists()
