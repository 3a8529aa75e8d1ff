"""scripts/bench.py runs end to end on tiny slices and writes the bench.json shape the issue promises."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, load_script


def _bench():
    return load_script("bench")


@pytest.mark.slow  # the default suite stays under about 10 minutes on 2 cores; run with -m slow
def test_bench_runs_and_writes_comparable_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    report = _bench().main(["--cases", "lstm1x128-rows", "gru2x128-rows", "--samples", "128", "--rounds", "2",
                            "--out", str(out)])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert {"platform", "cpu", "cpus", "tensorflow", "keras"} <= set(report["machine"])
    names = [case["name"] for case in report["cases"]]
    assert names == ["lstm1x128-rows", "gru2x128-rows"]
    has_torch = report["machine"]["torch"] is not None
    for case in report["cases"]:
        others = {"mnist_rnn_aa", "keras_fit", "keras_tuned"} | ({"torch"} if has_torch else set())
        assert set(case["paired"]) == others
        # the subject ran before, between and after every other slice: 1 + (others) slices a round
        subject = case["variants"]["mnist_rnn"]
        assert len(subject["train_samples_per_s"]["runs"]) == 2 * (1 + len(others))
        for name in others:
            assert len(case["variants"][name]["train_samples_per_s"]["runs"]) == 2
            for kind in ("train", "eval", "cpu_per_sample"):
                summary = case["paired"][name][kind]
                low, high = summary["ci90"]
                assert summary["pairs"] == 2 and low <= summary["median"] <= high
        assert case["aa_ratio"] == case["paired"]["mnist_rnn_aa"]["train"]["median"]
        assert case["ratio_vs_keras_fit"] == case["paired"]["keras_fit"]["train"]["median"]
        assert case["eval_ratio_vs_keras_tuned"] == case["paired"]["keras_tuned"]["eval"]["median"]
        for variant in case["variants"].values():
            assert variant["eval_samples_per_s"]["median"] > 0 and variant["compile_seconds"] > 0
            assert variant["train_cpu_seconds_per_sample"]["median"] > 0
        assert (case["torch_samples_per_s"] is not None) == has_torch
    out_text = capsys.readouterr().out
    assert "median of paired ratios" in out_text and "A/A" in out_text
    # (a) is timed on the path `mnist-rnn train` picks: fused LSTM + XLA for LSTM rows, XLA for a long GRU run
    # (whether the batch is also split into shards depends on the core count: execution.MIN_SHARD)
    executions = [
        case["variants"]["mnist_rnn"]["execution"].split(", batch in")[0] for case in report["cases"]
    ]
    assert executions == ["fused LSTM kernel, XLA on", "Keras recurrent layers, XLA on"]


@pytest.mark.slow  # the whole benchmark script, about 25 s; the results-table script stays in the suite
def test_bench_without_torch_says_so_and_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    report = _bench().main(["--cases", "lstm1x128-rows", "--samples", "128", "--rounds", "2",
                            "--out", str(tmp_path / "b.json")])  # fmt: skip
    assert "torch is not installed" in capsys.readouterr().out
    case = report["cases"][0]
    assert case["torch_samples_per_s"] is None and case["ratio_vs_torch"] is None
    assert set(case["variants"]) == {"mnist_rnn", "mnist_rnn_aa", "keras_fit", "keras_tuned"}
    assert case["paired"].keys() == {"mnist_rnn_aa", "keras_fit", "keras_tuned"}


@pytest.mark.parametrize("kernel", ["keras", "fused"])
def test_profile_sums_the_step_by_op_type(kernel: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Every op type listed: on tiny sizes the timing order (and so the top 15) varies from run to run.
    load_script("profile_step").main(["--kernel", kernel, "--units", "8", "--batches", "2", "--top", "1000"])
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert any("MatMul" in op for op in rows), out  # the recurrent matmuls are there, by type
    assert "Sigmoid" in rows  # one per gate (Keras) or one for all gates (fused): both show up


@pytest.mark.slow  # the default suite stays under about 10 minutes on 2 cores; run with -m slow
def test_profile_breakdown_times_both_kernels(capsys: pytest.CaptureFixture[str]) -> None:
    load_script("profile_step").main(["--breakdown", "--units", "8", "--batches", "2", "--reps", "1"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| keras") or
             line.startswith("| fused")]  # fmt: skip
    assert len(lines) == 2
    for line in lines:
        rates = [float(cell.replace(",", "")) for cell in line.split("|")[2:5]]
        assert all(rate > 0 for rate in rates)


def test_results_table_trains_through_the_cli_and_prints_the_row(
    tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load_script("results_table").main([str(tiny_config), "--root", str(tmp_path / "runs")])
    metrics = json.loads((tmp_path / "runs" / "tiny" / "metrics.json").read_text())
    header, rule, row = capsys.readouterr().out.strip().splitlines()
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert len(cells) == len(header.strip("|").split("|")) == rule.count("---")
    assert cells[1:4] == ["lstm [16]", "Keras LSTM", f"{metrics['test_accuracy']:.2%}"]
    assert cells[5] == str(metrics["epochs_run"])


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="the bench extra is not installed: pip install '.[bench]'",
)
def test_bench_runs_to_the_end_with_the_installed_torch_wheel(tmp_path: Path) -> None:
    """torch's default (CUDA) wheel brought triton, whose native library crashed the bench once TensorFlow
    was loaded. In a process of its own, since the failure was a segmentation fault."""
    import subprocess

    out = tmp_path / "bench.json"
    args = ["--cases", "lstm1x128-rows", "--rounds", "2", "--samples", "512", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (case,) = json.loads(out.read_text())["cases"]
    assert case["torch_samples_per_s"] > 0 and case["ratio_vs_torch"] > 0
