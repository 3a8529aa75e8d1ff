"""Latency of `POST /predict` for one picture: a real `mnist-rnn serve` process on 127.0.0.1, one client.

    python scripts/serve_latency.py RUN_DIR [--requests 200] [--picture tests/data/digits/7_dejavu-sans_0.png]

Starts the server on a free port, sends 10 warm-up requests, then `--requests` requests one after another
(a bounded loop; nothing else is contacted), for the plain answer and with `?steps=true` (the per-row
chart), and prints p50/p90/p99/max in milliseconds with the CPU they ran on.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np

from mnist_rnn.execution import cpu_description

REPO = Path(__file__).resolve().parents[1]


def start(run: Path, extra: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], str]:
    """`mnist-rnn serve RUN EXTRA...` on a free port of 127.0.0.1, once it answers /healthz."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "mnist_rnn", "serve", str(run), "--port", str(port), *extra]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit(f"the server did not start: {server.communicate()[1].decode()[-500:]}")


def measure(client: httpx.Client, url: str, picture: bytes, n: int) -> np.ndarray:
    files = {"file": ("digit.png", picture, "image/png")}
    for _ in range(10):
        client.post(url, files=files).raise_for_status()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        client.post(url, files=files).raise_for_status()
        times.append(time.perf_counter() - start)
    return np.asarray(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--picture", type=Path, default=REPO / "tests/data/digits/7_dejavu-sans_0.png")
    args = parser.parse_args()
    server, url = start(args.run)
    try:
        with httpx.Client(timeout=30) as client:
            picture = args.picture.read_bytes()
            print(f"{args.requests} sequential requests per row, one client, {cpu_description()}")
            print("| request | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|")
            for label, query in (("POST /predict", ""), ("POST /predict?steps=true", "?steps=true")):
                ms = measure(client, f"{url}/predict{query}", picture, args.requests)
                p50, p90, p99 = np.percentile(ms, [50, 90, 99])
                print(f"| `{label}` | {p50:.1f} | {p90:.1f} | {p99:.1f} | {ms.max():.1f} |")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
