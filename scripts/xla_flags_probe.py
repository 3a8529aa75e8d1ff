"""XLA:CPU flags against PyTorch as the yardstick: the fused LSTM + XLA training step vs `nn.LSTM`.

XLA_FLAGS apply to a whole process, so one setting cannot be compared with another inside one process.
PyTorch is untouched by them: each process times ours and PyTorch in ABA slices, and the paired ratio
ours/PyTorch is what compares across processes (two processes with no flags are the A/A).

    for f in "" --xla_cpu_use_onednn=true ""; do XLA_FLAGS=$f python scripts/xla_flags_probe.py 1 10; done

Prints one `RESULT {json}` line; docs/bench/2026-12-03-epyc-avx2-xla-flags.json holds a run of it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from mnist_rnn.config import Config, DataConfig, ModelConfig, TrainConfig  # noqa: E402
from mnist_rnn.data import load_embedded  # noqa: E402
from mnist_rnn.loop import compile_model, fit_epoch  # noqa: E402
from mnist_rnn.measure import neighbour_ratio, summarise  # noqa: E402
from mnist_rnn.model import build_model  # noqa: E402

UNITS, BATCH, STEPS, FEATURES = 128, 128, 28, 28
SLICE = 32 * BATCH  # samples per timed slice


def torch_trainer(layers: int):  # noqa: ANN201
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(FEATURES, UNITS, num_layers=layers, batch_first=True)
            self.head = nn.Linear(UNITS, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    net = Net()
    opt = torch.optim.Adam(net.parameters(), 1e-3)

    def train(x: np.ndarray, y: np.ndarray) -> None:
        xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
        for i in range(0, len(xt), BATCH):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(xt[i : i + BATCH]), yt[i : i + BATCH]).backward()
            opt.step()

    return train


def main(layers: int, rounds: int) -> dict:
    arrays = load_embedded()
    x = (arrays["train_images"][: 2 * SLICE].astype(np.float32) / 255).reshape(-1, STEPS, FEATURES)
    y = arrays["train_labels"][: 2 * SLICE].astype(np.int32)
    cfg = Config(
        data=DataConfig(layout="rows"),
        model=ModelConfig(cell="lstm", units=(UNITS,) * layers),
        train=TrainConfig(clipnorm=None, learning_rate=1e-3, batch_size=BATCH),
    )
    ours = build_model(cfg.model, (STEPS, FEATURES), fused=True)
    compile_model(ours, cfg.train, True)
    variants = {"ours": lambda a, b: fit_epoch(ours, a, b, BATCH, "/CPU:0"), "torch": torch_trainer(layers)}
    for run in variants.values():  # compile and warm up
        run(x[:SLICE], y[:SLICE])
    done = 0

    def timed(name: str) -> float:
        nonlocal done
        part = slice((done % 2) * SLICE, (done % 2 + 1) * SLICE)
        done += 1
        start = time.perf_counter()
        variants[name](x[part], y[part])
        rate = SLICE / (time.perf_counter() - start)
        if name == "torch":
            time.sleep(1.0)  # PyTorch's OpenMP threads spin on after a slice; do not let them share ours
        return rate

    pairs, rates = [], [timed("ours")]
    for _ in range(rounds):
        theirs, after = timed("torch"), timed("ours")
        pairs.append(neighbour_ratio(rates[-1], theirs, after))
        rates.append(after)
    return {
        "flags": os.environ.get("XLA_FLAGS", ""),
        "ours_over_torch": summarise(pairs),
        "pairs": pairs,
        "ours_median": float(np.median(rates)),
    }


if __name__ == "__main__":
    print("RESULT", json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
