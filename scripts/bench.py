"""Training and evaluation throughput of mnist-rnn vs a plain Keras `fit` script vs PyTorch, in one process.

    python scripts/bench.py --quick                 # ~3 minutes on 2 cores
    python scripts/bench.py                         # the full table of docs/performance.md
    python scripts/bench.py --time-to-accuracy      # also: wall time and epochs to 99% test accuracy

For each case (architecture x sequence layout) and each variant it measures, after a warm-up whose time
is reported separately as "compile":
  (a) mnist_rnn    — the model from `model.build_model`, compiled by `loop.compile_model`, trained one epoch
                     by `loop.fit_epoch`: exactly the code `mnist-rnn train` runs;
  (a') mnist_rnn_aa — a second, identical copy of (a): the A/A control, whose ratio to (a) shows the noise;
  (b) keras_fit    — the same architecture as a plain `keras.Sequential` and `model.fit(x, y, batch_size)`;
  (t) keras_tuned  — that Sequential as a competent Keras user would run it: `jit_compile=True`,
                     `steps_per_execution=32`, fed by the same tf.data pipeline as (a);
  (c) torch        — `nn.LSTM`/`nn.GRU` + `nn.Linear`, Adam, cross-entropy, a plain batch loop (the optional
                     `bench` extra: `pip install 'mnist-rnn[bench]'`; without it (c) is skipped and said so).
All use Adam(1e-3) without clipping, batch 128, float32, the same images. Repetitions are interleaved and
the order of the variants rotates from one repetition to the next, so that the machine's drifts and any
after-effect of the variant before hit every variant alike; the table gives the median with min and max,
and the ratios of the medians. Eval throughput is batched prediction (batch 1000), warmed up on every batch
shape it times. Peak memory is the RSS growth of one more, untimed run of each variant (the sampling thread
never runs inside a timed region).
Writes `bench.json` (--out) so results can be compared over time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# PyTorch's default (CUDA) wheel imports triton when the first optimizer step loads torch._dynamo, and
# triton's native library crashes in a process that has already loaded TensorFlow (segmentation fault,
# reproduced with torch 2.14.1 on an AMD EPYC). The bench compiles nothing, so triton stays out: torch's own
# guarded import of it then fails softly and torch runs eagerly, as the CPU-only wheel does.
sys.modules.setdefault("triton", None)  # type: ignore[assignment]

from mnist_rnn.tf_import import import_tensorflow  # noqa: E402

BATCH = 128
# A pause before each timed run: PyTorch's OpenMP workers spin-wait for a while after their last task,
# and on 2 cores that spinning slows down whichever variant runs next (LSTM 1x128 rows, --quick --reps 5:
# mnist-rnn's median was 7,196 samples/s without the pause, 8,926 with it; PyTorch's own rate did not drop).
SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class Case:
    name: str
    cell: str
    units: tuple[int, ...]
    layout: str  # rows: (28, 28); pixels: (784, 1)
    train_samples: int
    eval_samples: int


def cases(quick: bool) -> list[Case]:
    rows_n, pixels_n = (4096, 256) if quick else (16384, 1024)
    return [
        Case("lstm1x128-rows", "lstm", (128,), "rows", rows_n, 4 * rows_n),
        Case("lstm2x128-rows", "lstm", (128, 128), "rows", rows_n, 4 * rows_n),
        Case("gru2x128-rows", "gru", (128, 128), "rows", rows_n, 4 * rows_n),
        Case("lstm1x128-pixels", "lstm", (128,), "pixels", pixels_n, 4 * pixels_n),
    ]


# ---------------------------------------------------------------------------------------- variants


@dataclass
class Variant:
    """warm(x, y) builds and compiles; train(x, y) runs one epoch; predict(x) scores."""

    name: str
    warm: Callable[[np.ndarray, np.ndarray], None]
    train: Callable[[np.ndarray, np.ndarray], None]
    predict: Callable[[np.ndarray], np.ndarray]
    train_rates: list[float] = field(default_factory=list)
    eval_rates: list[float] = field(default_factory=list)
    compile_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    execution: str = ""  # mnist_rnn: the path `train` chose (fused LSTM kernel, XLA)


def case_config(case: Case) -> Any:
    """The mnist-rnn config of a case: its model, Adam(1e-3) without clipping, batch 128."""
    from mnist_rnn.config import Config, DataConfig, ModelConfig, TrainConfig

    return Config(
        data=DataConfig(layout=case.layout),
        model=ModelConfig(cell=case.cell, units=case.units),
        train=TrainConfig(clipnorm=None, learning_rate=1e-3, batch_size=BATCH),
    )


def mnist_rnn_variant(
    case: Case, input_shape: tuple[int, int], device: str, name: str = "mnist_rnn"
) -> Variant:
    from mnist_rnn.evaluate import Scorer
    from mnist_rnn.execution import plan_execution, plan_scoring
    from mnist_rnn.loop import compile_model, fit_epoch
    from mnist_rnn.model import build_model

    holder: dict[str, Any] = {}
    cfg = case_config(case)
    execution = plan_execution(cfg, device)  # what `mnist-rnn train` would choose for this config
    scorer = Scorer(cfg, plan_scoring(cfg, device))  # what its validation, test and eval run

    def warm(x: np.ndarray, y: np.ndarray) -> None:
        holder["m"] = build_model(cfg.model, input_shape, fused=execution.fused)
        compile_model(holder["m"], cfg.train, execution.xla)
        fit_epoch(holder["m"], x, y, BATCH, device)

    return Variant(
        name,
        warm,
        lambda x, y: fit_epoch(holder["m"], x, y, BATCH, device) and None,
        lambda x: scorer(holder["m"], x),
        execution=execution.describe(),
    )


def _keras_sequential(case: Case, input_shape: tuple[int, int]) -> Any:
    """The case's architecture as a plain Keras script would write it."""
    import keras

    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[case.cell]
    stack = [layer(u, return_sequences=i < len(case.units) - 1) for i, u in enumerate(case.units)]
    return keras.Sequential([keras.Input(input_shape), *stack, keras.layers.Dense(10, activation="softmax")])


def keras_fit_variant(case: Case, input_shape: tuple[int, int], device: str) -> Variant:
    holder: dict[str, Any] = {}

    def warm(x: np.ndarray, y: np.ndarray) -> None:
        model = _keras_sequential(case, input_shape)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
        holder["m"] = model

    return Variant(
        "keras_fit",
        warm,
        lambda x, y: holder["m"].fit(x, y, batch_size=BATCH, epochs=1, shuffle=True, verbose=0) and None,
        lambda x: holder["m"].predict(x, batch_size=1000, verbose=0),
    )


def keras_tuned_variant(case: Case, input_shape: tuple[int, int], device: str) -> Variant:
    """Plain Keras layers with the settings a competent user would pick: XLA, 32 steps per call, and the
    same shuffled tf.data input as (a). What is left between (a) and this is mnist-rnn's own work."""
    from mnist_rnn.evaluate import predict
    from mnist_rnn.loop import fit_epoch

    holder: dict[str, Any] = {"rng": np.random.default_rng(0)}

    def train(x: np.ndarray, y: np.ndarray) -> None:
        order = holder["rng"].permutation(len(x))
        fit_epoch(holder["m"], x[order], y[order], BATCH, device)

    def warm(x: np.ndarray, y: np.ndarray) -> None:
        model = _keras_sequential(case, input_shape)
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
            jit_compile=True, steps_per_execution=32,
        )  # fmt: skip
        holder["m"] = model
        train(x, y)

    return Variant("keras_tuned", warm, train, lambda x: predict(holder["m"], x, 1000))


def torch_variant(case: Case, input_shape: tuple[int, int]) -> Variant | None:
    try:
        import torch
        from torch import nn
    except ImportError:
        return None

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[case.cell]
            self.rnn = rnn(input_shape[1], case.units[0], num_layers=len(case.units), batch_first=True)
            self.head = nn.Linear(case.units[-1], 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(x)
            return self.head(out[:, -1])  # logits; softmax is in the loss

    holder: dict[str, Any] = {}

    def train(x: np.ndarray, y: np.ndarray) -> None:
        net, opt = holder["net"], holder["opt"]
        xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
        order = torch.randperm(len(xt))
        net.train()
        for i in range(0, len(xt), BATCH):
            idx = order[i : i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()

    def warm(x: np.ndarray, y: np.ndarray) -> None:
        torch.manual_seed(0)
        holder["net"] = Net()
        holder["opt"] = torch.optim.Adam(holder["net"].parameters(), lr=1e-3)
        train(x, y)

    def predict(x: np.ndarray) -> np.ndarray:
        net = holder["net"].eval()
        with torch.no_grad():
            parts = [
                torch.softmax(net(torch.from_numpy(x[i : i + 1000])), -1) for i in range(0, len(x), 1000)
            ]
        return torch.cat(parts).numpy()

    return Variant("torch", warm, train, predict)


# -------------------------------------------------------------------------------------- measuring


class PeakRss:
    """Samples this process's resident memory every 5 ms while active."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRss:
        self.base = self.process.memory_info().rss
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()

    @property
    def growth_mib(self) -> float:
        return max(0, self.peak - self.base) / 2**20


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_case(case: Case, images: np.ndarray, labels: np.ndarray, reps: int, device: str) -> dict[str, Any]:
    from mnist_rnn.layouts import make_sequences

    x_all = make_sequences(images, case.layout)
    x, y = x_all[: case.train_samples], labels[: case.train_samples]
    x_eval = x_all[: case.eval_samples]
    shape = (int(x.shape[1]), int(x.shape[2]))
    variants = [
        mnist_rnn_variant(case, shape, device),
        mnist_rnn_variant(case, shape, device, name="mnist_rnn_aa"),
        keras_fit_variant(case, shape, device),
        keras_tuned_variant(case, shape, device),
    ]
    torch_v = torch_variant(case, shape)
    if torch_v is not None:
        variants.append(torch_v)
    warm_x, warm_y = x[: 2 * BATCH], y[: 2 * BATCH]
    for v in variants:
        v.compile_seconds = timed(lambda v=v: v.warm(warm_x, warm_y))
        v.predict(x_eval)  # every batch shape the timed eval sees (a partial last batch is another trace)
    for rep in range(reps):  # interleaved, the order rotated: a a' b t c, a' b t c a, ...
        for v in variants[rep % len(variants) :] + variants[: rep % len(variants)]:
            time.sleep(SETTLE_SECONDS)
            v.train_rates.append(len(x) / timed(lambda v=v: v.train(x, y)))
            v.eval_rates.append(len(x_eval) / timed(lambda v=v: v.predict(x_eval)))
    for v in variants:  # memory: one more run each, untimed, so no sampling thread runs while timing
        with PeakRss() as rss:
            v.train(x, y)
            v.predict(x_eval)
        v.peak_rss_mib = rss.growth_mib
    by = {v.name: v for v in variants}
    med = {name: statistics.median(v.train_rates) for name, v in by.items()}
    eval_med = {name: statistics.median(v.eval_rates) for name, v in by.items()}
    best = {name: max(v.train_rates) for name, v in by.items()}
    eval_best = {name: max(v.eval_rates) for name, v in by.items()}
    result: dict[str, Any] = {
        "name": case.name,
        "train_samples": case.train_samples,
        "eval_samples": case.eval_samples,
        "repetitions": reps,
        "variants": {
            name: {
                "train_samples_per_s": {
                    "median": med[name], "min": min(v.train_rates), "max": max(v.train_rates),
                    "runs": v.train_rates,
                },
                "eval_samples_per_s": {
                    "median": eval_med[name], "min": min(v.eval_rates), "max": max(v.eval_rates),
                    "runs": v.eval_rates,
                },
                "compile_seconds": v.compile_seconds,
                "peak_rss_growth_mib": v.peak_rss_mib,
                **({"execution": v.execution} if v.execution else {}),
            }
            for name, v in by.items()
        },
        "order": "interleaved, rotated each repetition",
        "mnist_rnn_samples_per_s": med["mnist_rnn"],
        "keras_fit_samples_per_s": med["keras_fit"],
        "keras_tuned_samples_per_s": med["keras_tuned"],
        "aa_ratio": med["mnist_rnn"] / med["mnist_rnn_aa"],  # the A/A control: 1.0 but for noise
        "eval_aa_ratio": eval_med["mnist_rnn"] / eval_med["mnist_rnn_aa"],
        "ratio_vs_keras_tuned": med["mnist_rnn"] / med["keras_tuned"],
        "eval_ratio_vs_keras_tuned": eval_med["mnist_rnn"] / eval_med["keras_tuned"],
        "best_ratio_vs_keras_tuned": best["mnist_rnn"] / best["keras_tuned"],
        "best_eval_ratio_vs_keras_tuned": eval_best["mnist_rnn"] / eval_best["keras_tuned"],
        "torch_samples_per_s": med.get("torch"),
        "ratio_vs_keras_fit": med["mnist_rnn"] / med["keras_fit"],
        "ratio_vs_torch": med["mnist_rnn"] / med["torch"] if "torch" in med else None,
        "eval_ratio_vs_keras_fit": eval_med["mnist_rnn"] / eval_med["keras_fit"],
        "eval_ratio_vs_torch": eval_med["mnist_rnn"] / eval_med["torch"] if "torch" in eval_med else None,
        # Best-of ratios: this machine kind has slow spells that halve a run's speed at random, and the
        # fastest run of each variant is the one least hit by them (timeit's reasoning).
        "best_ratio_vs_keras_fit": best["mnist_rnn"] / best["keras_fit"],
        "best_ratio_vs_torch": best["mnist_rnn"] / best["torch"] if "torch" in best else None,
        "best_eval_ratio_vs_keras_fit": eval_best["mnist_rnn"] / eval_best["keras_fit"],
        "best_eval_ratio_vs_torch": (
            eval_best["mnist_rnn"] / eval_best["torch"] if "torch" in eval_best else None
        ),
    }  # fmt: skip
    return result


def time_to_accuracy(target: float, plain: bool = False) -> dict[str, Any]:
    """Train configs/default.yaml through `run_training` (validation, checkpoints and all, as `mnist-rnn
    train` does) until the test accuracy reaches `target` or its 12 epochs end. The time is the epochs'
    fit time (history.csv's seconds); scoring the test split after each epoch is excluded."""
    import tempfile

    from rich.console import Console

    from mnist_rnn.config import Config, Jit, LstmKernel
    from mnist_rnn.data import load_dataset
    from mnist_rnn.evaluate import Scorer
    from mnist_rnn.execution import Execution, plan_scoring, select_device
    from mnist_rnn.train import EpochEnd, run_training

    cfg = Config()  # == configs/default.yaml (a unit test holds them equal)
    if plain:  # the path before the speed work: Keras's LSTM, no XLA, one step per call
        plain_train = cfg.train.model_copy(update={"jit_compile": Jit.off, "steps_per_execution": 1})
        plain_model = cfg.model.model_copy(update={"lstm_kernel": LstmKernel.keras})
        cfg = cfg.model_copy(update={"train": plain_train, "model": plain_model})
    data = load_dataset(cfg.data, cfg.seed)
    accuracies: list[float] = []
    scorer = Scorer(cfg, plan_scoring(cfg, select_device(cfg.train.device)))

    def reached(end: EpochEnd) -> bool:
        accuracies.append(scorer.score(end.model, data.test).accuracy)
        return accuracies[-1] >= target

    with tempfile.TemporaryDirectory(prefix="mnist-rnn-bench-") as root:
        result = run_training(
            cfg, Path(root) / "run", console=Console(quiet=True), dataset=data, on_epoch_end=reached
        )
    return {
        "config": "configs/default.yaml"
        + (" with model.lstm_kernel=keras, train.jit_compile=off, steps_per_execution=1" if plain else ""),
        "execution": Execution(**result.metrics["execution"]).describe(),
        "target": target,
        "reached": accuracies[-1] >= target,
        "epochs": len(accuracies),
        "train_wall_seconds": result.metrics["train_seconds"],
        "test_accuracy_per_epoch": accuracies,
    }


# ------------------------------------------------------------------------------ physical ceiling

_GATES = {"lstm": 4, "gru": 3, "janet": 2, "simple_rnn": 1}


def flops_per_sample(case: Case) -> dict[str, float]:
    """Multiply-adds of the recurrent matmuls (x W and h U per step, every layer) plus the classifier, as
    FLOPs (2 per multiply-add): the forward pass, and training as 3x forward (forward, then the gradients
    with respect to the activations and to the weights, each a matmul of the same size). Elementwise gate
    work is left out: it is a few percent of these and runs at a fraction of the matmul rate anyway."""
    steps, features = (28, 28) if case.layout == "rows" else (784, 1)
    macs, inputs = 0, features
    for units in case.units:
        macs += steps * _GATES[case.cell] * units * (inputs + units)
        inputs = units
    macs += inputs * 10
    return {"forward": 2.0 * macs, "train": 6.0 * macs}


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    """The machine's single-precision matmul rate through TensorFlow (all cores), best of `repeats`."""
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    b = tf.random.uniform((n, n), dtype=tf.float32)
    tf.matmul(a, b).numpy()  # warm-up: thread pools, kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        tf.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def ceiling(case: dict[str, Any], flops: dict[str, float], gflops: float) -> dict[str, Any]:
    """The samples/s the matmul rate would allow, and the share of it each variant reaches."""
    train_max, eval_max = gflops * 1e9 / flops["train"], gflops * 1e9 / flops["forward"]
    return {
        "flops_per_sample": flops,
        "train_samples_per_s_at_matmul_rate": train_max,
        "eval_samples_per_s_at_matmul_rate": eval_max,
        "share_of_ceiling": {
            name: {
                "train": v["train_samples_per_s"]["median"] / train_max,
                "eval": v["eval_samples_per_s"]["median"] / eval_max,
            }
            for name, v in case["variants"].items()
        },
    }


# ---------------------------------------------------------------------------------------- output


def machine_facts(device: str) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from mnist_rnn.execution import cpu_description

    facts: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_description(),  # AVX2 and AVX-512 machines rank the paths differently
        "cpus": os.cpu_count(),
        "device": device,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["torch_threads"] = torch.get_num_threads()
    except ImportError:
        facts["torch"] = None
    return facts


def _ratio(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def _ratios(case: dict[str, Any], kind: str) -> str:
    """`a/b, a/t, a/c` of medians for kind `ratio` (training) or `eval_ratio`, then A/A."""
    text = ", ".join(_ratio(case[f"{kind}_vs_{other}"]) for other in ("keras_fit", "keras_tuned", "torch"))
    aa = case["aa_ratio" if kind == "ratio" else "eval_aa_ratio"]
    return f"{text}; A/A {aa:.2f}"


def print_table(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="Training and eval throughput (samples/s, median \\[min-max] of interleaved runs); "
        "ratios of medians (and of best runs)"
    )
    for col in ("case", "variant", "train samples/s", "eval samples/s", "compile s", "peak RSS +MiB"):
        table.add_column(col, justify="left" if col in ("case", "variant") else "right")
    for r in results:
        for name, v in r["variants"].items():
            t, e = v["train_samples_per_s"], v["eval_samples_per_s"]
            table.add_row(
                r["name"],
                f"{name} ({v['execution']})" if "execution" in v else name,
                f"{t['median']:,.0f} [{t['min']:,.0f}-{t['max']:,.0f}]",
                f"{e['median']:,.0f} [{e['min']:,.0f}-{e['max']:,.0f}]",
                f"{v['compile_seconds']:.1f}",
                f"{v['peak_rss_growth_mib']:.0f}",
            )
        label = "[bold]ratio a/b, a/t, a/c[/bold]"
        table.add_row(
            r["name"], label, _ratios(r, "ratio"), _ratios(r, "eval_ratio"), "", "", end_section=True
        )
    Console(width=160).print(table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller slices and 2 repetitions (~3 min)")
    parser.add_argument("--reps", type=int, help="interleaved repetitions (default 3; 2 with --quick)")
    parser.add_argument("--cases", nargs="*", help="only these case names")
    parser.add_argument("--samples", type=int, help="override the training slice of every case (tests)")
    parser.add_argument("--time-to-accuracy", action="store_true", help="also train to 99%% test accuracy")
    parser.add_argument("--plain", action="store_true", help="time-to-accuracy on the plain path (no XLA)")
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    args = parser.parse_args(argv)

    import_tensorflow()
    from mnist_rnn.config import Device
    from mnist_rnn.data import load_embedded
    from mnist_rnn.execution import select_device

    device = select_device(Device.auto)
    arrays = load_embedded()
    images, labels = arrays["train_images"], arrays["train_labels"].astype(np.int32)
    chosen = [c for c in cases(args.quick) if not args.cases or c.name in args.cases]
    if args.samples:
        chosen = [Case(c.name, c.cell, c.units, c.layout, args.samples, args.samples) for c in chosen]
    reps = args.reps or (2 if args.quick else 3)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: the PyTorch variant is skipped (pip install 'mnist-rnn[bench]')")
    results = []
    for case in chosen:
        print(
            f"measuring {case.name} ({case.train_samples} training samples, {reps} repetitions)", flush=True
        )
        results.append(run_case(case, images, labels, reps, device))
    gflops = matmul_gflops()
    for case, result in zip(chosen, results, strict=True):
        result["ceiling"] = ceiling(result, flops_per_sample(case), gflops)
    report: dict[str, Any] = {"machine": machine_facts(device) | {"matmul_gflops": gflops}, "cases": results}
    if args.time_to_accuracy:
        report["time_to_99"] = time_to_accuracy(0.99, plain=args.plain)
    print_table(results)
    print(f"float32 matmul (1024x1024, TensorFlow, all cores): {gflops:.1f} GFLOP/s")
    for r in results:
        c = r["ceiling"]
        shares = ", ".join(f"{name} {v['train']:.1%}" for name, v in c["share_of_ceiling"].items())
        print(
            f"{r['name']}: {c['flops_per_sample']['train'] / 1e6:.1f} MFLOP per training sample, "
            f"ceiling {c['train_samples_per_s_at_matmul_rate']:,.0f} samples/s; reached: {shares}"
        )
    if "time_to_99" in report:
        t = report["time_to_99"]
        reached = "" if t["reached"] else " (NOT reached)"
        wall, epochs = t["train_wall_seconds"], t["epochs"]
        print(f"time to 99% test accuracy (default config): {wall:.0f} s, {epochs} epochs{reached}")
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
