"""Training and evaluation throughput of mnist-rnn vs plain and tuned Keras vs PyTorch, in one process.

    python scripts/bench.py --quick                 # every case, 12 rounds (~15 minutes on 2 cores)
    python scripts/bench.py                         # 30 rounds
    python scripts/bench.py --time-to-accuracy      # also: wall time and epochs to 99% test accuracy

For each case (architecture x sequence layout) the variants are:
  (a) mnist_rnn    — the model from `model.build_model`, compiled by `loop.compile_model`, trained by
                     `loop.fit_epoch`: exactly the code `mnist-rnn train` runs (the subject), in a
                     process of its own with the threads per op that `train` would set;
  (a') mnist_rnn_aa — a second, identical copy of (a) in a third process: the A/A control;
  (b) keras_fit    — the same architecture as a plain `keras.Sequential` and `model.fit(x, y, batch_size)`;
  (t) keras_tuned  — that Sequential as a competent Keras user would run it: `jit_compile=True`,
                     `steps_per_execution=32`, fed by the same tf.data pipeline as (a);
  (c) torch        — `nn.LSTM`/`nn.GRU` + `nn.Linear`, Adam, cross-entropy, a plain batch loop (the optional
                     `bench` extra: `pip install 'mnist-rnn[bench]'`; without it (c) is skipped and said so).
All use Adam(1e-3) without clipping, batch 128, float32, the same images. Only one variant runs at a time:
the processes of (a) and (a') wait on their pipes while the others run in this one.

How it is timed (mnist_rnn/measure.py says why): after a warm-up (its time is reported as "compile"),
each variant trains in short slices of a few batches (about 1-2 s) and then scores a fixed set of images.
A round is the subject's slice, another variant's, the subject's again, and so on through every other
variant (A x A y A z ...), the others' order rotated from round to round. Each other slice is compared
with the subject's slices either side of it, so both see the same spell of the machine's speed: the
paired ratio. A case reports, per comparison, the median of its paired ratios with a bootstrap 90%
interval and a verdict ("above" or "below" 1.0 only when the whole interval is), for training and eval
throughput and for CPU seconds per training sample; the A/A control is paired the same way. Peak memory is
the RSS growth of one more, untimed slice of each variant. Writes `bench.json` (--out).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
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
# The processes of `planned_process_variant` import this module by name (multiprocessing's spawn gives them
# this process's sys.path), also when it was loaded from its file (the tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))

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
    slice_batches: int  # batches per timed training slice: about 1-2 s for the subject on 2 cores
    eval_samples: int  # images scored per eval slice
    pool: int = 8192  # training images the slices take their windows from, in turn
    rounds_share: float = 1.0  # of --rounds: the two-layer pixel case is slow per slice


def cases() -> list[Case]:
    return [
        Case("lstm1x128-rows", "lstm", (128,), "rows", 32, 4096),
        Case("lstm2x128-rows", "lstm", (128, 128), "rows", 32, 4096),
        Case("gru2x128-rows", "gru", (128, 128), "rows", 32, 4096),
        Case("lstm1x128-pixels", "lstm", (128,), "pixels", 2, 256, pool=1024),
        Case("lstm2x128-pixels", "lstm", (128, 128), "pixels", 1, 128, pool=512, rounds_share=0.5),
    ]


# ---------------------------------------------------------------------------------------- variants


@dataclass
class Variant:
    """warm(x, y) builds and compiles; train(x, y) runs one epoch; predict(x) scores."""

    name: str
    warm: Callable[[np.ndarray, np.ndarray], None]
    train: Callable[[np.ndarray, np.ndarray], None]
    predict: Callable[[np.ndarray], np.ndarray]
    train_rates: list[float] = field(default_factory=list)  # samples/s, one per slice
    eval_rates: list[float] = field(default_factory=list)
    train_cpu: list[float] = field(default_factory=list)  # process CPU seconds per training sample
    compile_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    execution: str = ""  # mnist_rnn: the path `train` chose (fused LSTM kernel, XLA)
    pid: int = field(default_factory=os.getpid)  # the process it runs in (its memory is measured there)
    # Set for a variant in a process of its own (`planned_process_variant`): runs warm/train/predict there
    # and returns (wall s, CPU s) measured there.
    remote: Callable[..., tuple[float, float]] | None = None

    def timed(self, what: str, *args: np.ndarray) -> tuple[float, float]:
        """(wall seconds, CPU seconds) of warm, train or predict, measured in the variant's own process."""
        if self.remote is not None:
            return self.remote(what, *args)
        return timed(lambda: getattr(self, what)(*args))


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
    from mnist_rnn.execution import plan_execution, plan_scoring, scoring_shards
    from mnist_rnn.loop import compile_model, fit_epoch
    from mnist_rnn.model import build_model

    holder: dict[str, Any] = {}
    cfg = case_config(case)
    execution = plan_execution(cfg, device)  # what `mnist-rnn train` would choose for this config
    xla = plan_scoring(cfg, device)
    scorer = Scorer(cfg, xla, scoring_shards(cfg, xla))  # what its validation, test and eval run

    def warm(x: np.ndarray, y: np.ndarray) -> None:
        holder["m"] = build_model(cfg.model, input_shape, fused=execution.fused, shards=execution.shards)
        compile_model(holder["m"], cfg.train, execution.xla)
        fit_epoch(holder["m"], x, y, BATCH, device)

    return Variant(
        name,
        warm,
        lambda x, y: fit_epoch(holder["m"], x, y, BATCH, device) and None,
        lambda x: scorer(holder["m"], x),
        execution=execution.describe(),
    )


def planned_process_variant(case: Case, input_shape: tuple[int, int], device: str, name: str) -> Variant:
    """`mnist_rnn_variant` in a process of its own, set up as `mnist-rnn train` sets itself up: threads per
    op are fixed for a whole process before TensorFlow starts, and the plan may choose them
    (`execution.planned_cpu_threads`), while the Keras variants beside it keep TensorFlow's default. The
    process waits on its pipe while the others run; it ends with the case (`Variant.remote(None)`)."""
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_variant, args=(child, case, input_shape, device, name), daemon=True
    )
    process.start()
    execution = parent.recv()

    def remote(what: str | None, *args: np.ndarray) -> tuple[float, float]:
        parent.send(None if what is None else (what, args))
        if what is None:
            process.join()
            return 0.0, 0.0
        return parent.recv()

    def call(what: str) -> Callable[..., None]:
        return lambda *args: remote(what, *args) and None

    assert process.pid is not None
    warm, train, predict = call("warm"), call("train"), call("predict")
    return Variant(name, warm, train, predict, execution=execution, pid=process.pid, remote=remote)


def _serve_variant(conn: Any, case: Case, input_shape: tuple[int, int], device: str, name: str) -> None:
    """The process of a `planned_process_variant`: the plan's threads, then warm/train/predict on request."""
    import_tensorflow()
    from mnist_rnn.execution import plan_execution, planned_cpu_threads, set_cpu_threads

    cfg = case_config(case)
    set_cpu_threads(planned_cpu_threads(cfg, plan_execution(cfg, device)))
    variant = mnist_rnn_variant(case, input_shape, device, name)
    conn.send(variant.execution)
    while (request := conn.recv()) is not None:
        what, args = request
        conn.send(variant.timed(what, *args))


def keras_sequential(case: Case, input_shape: tuple[int, int]) -> Any:
    """The case's architecture as a plain Keras script would write it."""
    import keras

    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[case.cell]
    stack = [layer(u, return_sequences=i < len(case.units) - 1) for i, u in enumerate(case.units)]
    return keras.Sequential([keras.Input(input_shape), *stack, keras.layers.Dense(10, activation="softmax")])


def keras_fit_variant(case: Case, input_shape: tuple[int, int], device: str) -> Variant:
    holder: dict[str, Any] = {}

    def warm(x: np.ndarray, y: np.ndarray) -> None:
        model = keras_sequential(case, input_shape)
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
    from mnist_rnn.loop import fit_epoch
    from mnist_rnn.trained import keras_predict

    holder: dict[str, Any] = {"rng": np.random.default_rng(0)}

    def train(x: np.ndarray, y: np.ndarray) -> None:
        order = holder["rng"].permutation(len(x))
        fit_epoch(holder["m"], x[order], y[order], BATCH, device)

    def warm(x: np.ndarray, y: np.ndarray) -> None:
        model = keras_sequential(case, input_shape)
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
            jit_compile=True, steps_per_execution=32,
        )  # fmt: skip
        holder["m"] = model
        train(x, y)

    return Variant("keras_tuned", warm, train, lambda x: keras_predict(holder["m"], x, 1000))


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

    def __init__(self, pid: int | None = None) -> None:
        import psutil

        self.process = psutil.Process(pid)
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


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


@dataclass(frozen=True)
class Slice:
    train_rate: float
    eval_rate: float
    cpu_per_sample: float


def run_slice(v: Variant, x: np.ndarray, y: np.ndarray, x_eval: np.ndarray) -> Slice:
    wall, cpu = v.timed("train", x, y)
    eval_wall, _ = v.timed("predict", x_eval)
    result = Slice(len(x) / wall, len(x_eval) / eval_wall, cpu / len(x))
    v.train_rates.append(result.train_rate)
    v.eval_rates.append(result.eval_rate)
    v.train_cpu.append(result.cpu_per_sample)
    if v.name == "torch":  # PyTorch's OpenMP workers spin-wait after their last task, slowing what follows
        time.sleep(SETTLE_SECONDS)
    return result


def _rates(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def run_case(case: Case, images: np.ndarray, labels: np.ndarray, rounds: int, device: str) -> dict[str, Any]:
    from mnist_rnn.layouts import make_sequences
    from mnist_rnn.measure import neighbour_ratio, summarise

    x_all = make_sequences(images[: max(case.pool, case.eval_samples)], case.layout)
    y_all = labels[: len(x_all)]
    size = case.slice_batches * BATCH
    windows = [(x_all[i : i + size], y_all[i : i + size]) for i in range(0, case.pool - size + 1, size)]
    x_eval = x_all[: case.eval_samples]
    shape = (int(x_all.shape[1]), int(x_all.shape[2]))
    subject = planned_process_variant(case, shape, device, "mnist_rnn")
    others = [
        planned_process_variant(case, shape, device, "mnist_rnn_aa"),
        keras_fit_variant(case, shape, device),
        keras_tuned_variant(case, shape, device),
    ]
    torch_v = torch_variant(case, shape)
    if torch_v is not None:
        others.append(torch_v)
    warm_x, warm_y = windows[0]
    for v in [subject, *others]:  # build, compile, and trace every shape the timed slices use
        v.compile_seconds = v.timed("warm", warm_x, warm_y)[0]
        v.predict(x_eval)
    pairs: dict[str, dict[str, list[float]]] = {o.name: {"train": [], "eval": [], "cpu": []} for o in others}
    turn = 0

    def next_window() -> tuple[np.ndarray, np.ndarray]:
        nonlocal turn
        turn += 1
        return windows[turn % len(windows)]

    for r in range(rounds):  # A x A y A z A ..., the others rotated each round
        before = run_slice(subject, *next_window(), x_eval)
        for other in others[r % len(others) :] + others[: r % len(others)]:
            theirs = run_slice(other, *next_window(), x_eval)
            after = run_slice(subject, *next_window(), x_eval)
            pair = pairs[other.name]
            pair["train"].append(neighbour_ratio(before.train_rate, theirs.train_rate, after.train_rate))
            pair["eval"].append(neighbour_ratio(before.eval_rate, theirs.eval_rate, after.eval_rate))
            # CPU seconds per sample, theirs over ours: above 1 when ours spends less CPU
            pair["cpu"].append(theirs.cpu_per_sample / (before.cpu_per_sample * after.cpu_per_sample) ** 0.5)
            before = after
    for v in [
        subject,
        *others,
    ]:  # memory: one more slice each, untimed, so no sampling thread runs while timing
        with PeakRss(v.pid) as rss:
            v.train(*windows[0])
            v.predict(x_eval)
        v.peak_rss_mib = rss.growth_mib
        if v.remote is not None:
            v.remote(None)  # its process ends
    paired = {
        name: {kind: summarise(values) for kind, values in (("train", p["train"]), ("eval", p["eval"]),
                                                            ("cpu_per_sample", p["cpu"]))}
        for name, p in pairs.items()
    }  # fmt: skip

    def median_ratio(name: str, kind: str = "train") -> float | None:
        return paired[name][kind]["median"] if name in paired else None  # type: ignore[return-value]

    variants = {v.name: v for v in [subject, *others]}
    return {
        "name": case.name,
        "slice_batches": case.slice_batches,
        "slice_samples": size,
        "eval_samples": case.eval_samples,
        "rounds": rounds,
        "order": "A x A y A ...: each other variant's slice between two of the subject's; others rotated",
        "variants": {
            name: {
                "train_samples_per_s": _rates(v.train_rates),
                "eval_samples_per_s": _rates(v.eval_rates),
                "train_cpu_seconds_per_sample": _rates(v.train_cpu),
                "compile_seconds": v.compile_seconds,
                "peak_rss_growth_mib": v.peak_rss_mib,
                **({"execution": v.execution} if v.execution else {}),
            }
            for name, v in variants.items()
        },
        "paired": paired,  # mnist_rnn over each other variant (cpu_per_sample: theirs over ours)
        "mnist_rnn_samples_per_s": statistics.median(subject.train_rates),
        "keras_fit_samples_per_s": statistics.median(variants["keras_fit"].train_rates),
        "keras_tuned_samples_per_s": statistics.median(variants["keras_tuned"].train_rates),
        "torch_samples_per_s": statistics.median(torch_v.train_rates) if torch_v else None,
        "aa_ratio": median_ratio("mnist_rnn_aa"),
        "eval_aa_ratio": median_ratio("mnist_rnn_aa", "eval"),
        "ratio_vs_keras_fit": median_ratio("keras_fit"),
        "ratio_vs_keras_tuned": median_ratio("keras_tuned"),
        "ratio_vs_torch": median_ratio("torch"),
        "eval_ratio_vs_keras_fit": median_ratio("keras_fit", "eval"),
        "eval_ratio_vs_keras_tuned": median_ratio("keras_tuned", "eval"),
        "eval_ratio_vs_torch": median_ratio("torch", "eval"),
    }


def time_to_accuracy(target: float, plain: bool = False) -> dict[str, Any]:
    """Train configs/default.yaml through `run_training` (validation, checkpoints and all, as `mnist-rnn
    train` does) until the test accuracy reaches `target` or its planned epochs end. The time is the epochs'
    fit time (history.csv's seconds); scoring the test split after each epoch is excluded."""
    import tempfile

    from rich.console import Console

    from mnist_rnn.config import Jit, LstmKernel
    from mnist_rnn.config_files import load_config
    from mnist_rnn.data import load_dataset
    from mnist_rnn.evaluate import Scorer
    from mnist_rnn.execution import Execution, plan_scoring, select_device
    from mnist_rnn.train import EpochEnd, run_training

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")
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

    before = resource.getrusage(resource.RUSAGE_SELF)
    with tempfile.TemporaryDirectory(prefix="mnist-rnn-bench-") as root:
        result = run_training(
            cfg, Path(root) / "run", console=Console(quiet=True), dataset=data, on_epoch_end=reached
        )
    after = resource.getrusage(resource.RUSAGE_SELF)
    # CPU time of the whole run (compiles, validation and the per-epoch test scoring included): how much
    # of it the kernel took (page faults, thread wake-ups) is the system share
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {
        "config": "configs/default.yaml"
        + (" with model.lstm_kernel=keras, train.jit_compile=off, steps_per_execution=1" if plain else ""),
        "execution": Execution(**result.metrics["execution"]).describe(),
        "target": target,
        "reached": accuracies[-1] >= target,
        "epochs": len(accuracies),
        "train_wall_seconds": result.metrics["train_seconds"],
        "test_accuracy_per_epoch": accuracies,
        "user_seconds": user,
        "system_seconds": system,
        "system_share": system / (user + system),
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

    from mnist_rnn.cpu import capped_env
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
        # every variant's XLA code, the Keras scripts' too: set for the whole process (cpu.planned_xla_flags)
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "isa_cap": capped_env(),  # MNIST_RNN_CPU_ISA=AVX2 on an AVX-512 CPU: the libraries held to AVX2
    }
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["torch_threads"] = torch.get_num_threads()
    except ImportError:
        facts["torch"] = None
    return facts


def paired_text(summary: dict[str, Any]) -> str:
    """`1.23 [1.10-1.31] above`: the median paired ratio, its 90% interval and the verdict against 1.0."""
    if summary["median"] is None:
        return "-"
    low, high = summary["ci90"]
    return f"{summary['median']:.2f} [{low:.2f}-{high:.2f}] {summary['verdict']}"


def print_table(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    rates = Table(title="Throughput per slice (samples/s, median \\[min-max]) and CPU seconds per sample")
    for col in (
        "case",
        "variant",
        "train samples/s",
        "eval samples/s",
        "CPU ms/sample",
        "compile s",
        "RSS +MiB",
    ):
        rates.add_column(col, justify="left" if col in ("case", "variant") else "right")
    ratios = Table(title="mnist_rnn over each variant: median of paired ratios \\[90% interval] and verdict")
    for col in ("case", "vs", "training", "eval", "CPU per sample (theirs/ours)"):
        ratios.add_column(col, justify="left")
    for r in results:
        for name, v in r["variants"].items():
            t, e = v["train_samples_per_s"], v["eval_samples_per_s"]
            rates.add_row(
                r["name"],
                f"{name} ({v['execution']})" if "execution" in v else name,
                f"{t['median']:,.0f} [{t['min']:,.0f}-{t['max']:,.0f}]",
                f"{e['median']:,.0f} [{e['min']:,.0f}-{e['max']:,.0f}]",
                f"{v['train_cpu_seconds_per_sample']['median'] * 1e3:.2f}",
                f"{v['compile_seconds']:.1f}",
                f"{v['peak_rss_growth_mib']:.0f}",
                end_section=name == list(r["variants"])[-1],
            )
        for other, p in r["paired"].items():
            ratios.add_row(
                r["name"], "A/A" if other == "mnist_rnn_aa" else other,
                paired_text(p["train"]), paired_text(p["eval"]), paired_text(p["cpu_per_sample"]),
                end_section=other == list(r["paired"])[-1],
            )  # fmt: skip
    console = Console(width=170)
    console.print(rates)
    console.print(ratios)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="12 rounds instead of 30")
    parser.add_argument("--rounds", "--reps", type=int, help="rounds of slices (default 30; 12 with --quick)")
    parser.add_argument("--cases", nargs="*", help="only these case names")
    parser.add_argument("--samples", type=int, help="slices of this many samples, eval of as many (tests)")
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
    chosen = [c for c in cases() if not args.cases or c.name in args.cases]
    if args.samples:
        batches = max(1, args.samples // BATCH)
        chosen = [
            Case(c.name, c.cell, c.units, c.layout, batches, args.samples, args.samples) for c in chosen
        ]
    rounds = args.rounds or (12 if args.quick else 30)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: the PyTorch variant is skipped (pip install 'mnist-rnn[bench]')")
    results = []
    for case in chosen:
        n = max(2, round(rounds * case.rounds_share))
        print(f"measuring {case.name} ({n} rounds of {case.slice_batches}-batch slices)", flush=True)
        results.append(run_case(case, images, labels, n, device))
    gflops = matmul_gflops()
    for case, result in zip(chosen, results, strict=True):
        result["ceiling"] = ceiling(result, flops_per_sample(case), gflops)
    report: dict[str, Any] = {"machine": machine_facts(device) | {"matmul_gflops": gflops}, "cases": results}
    if args.time_to_accuracy:
        # in a process of its own, which sets itself up as `mnist-rnn train` does (threads per op included)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            report["time_to_99"] = pool.apply(time_to_accuracy, (0.99, args.plain))
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
        print(
            f"time to 99% test accuracy (default config): {wall:.0f} s, {epochs} epochs{reached}; "
            f"system time {t['system_share']:.1%} of CPU time"
        )
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
