"""Throughput of `POST /predict` under concurrent clients: micro-batching (`--max-batch 64`, the default)
against one model call per request (`--max-batch 1`), and how throughput grows from one client to many,
measured in one run on real `mnist-rnn serve` processes on 127.0.0.1.

    python scripts/serve_load.py RUN_DIR [--workers 2] [--clients 1 8 32] [--requests 600] [--rounds 8]
        [--out FILE.json]

Three servers run side by side, each with `--workers` processes: `one` (--max-batch 1), `batched` and
`batched-again` (both default; the A/A control). Every round sends `--requests` uploads of one picture to
each server at each client count (`clients` at a time), in a shuffled order, and times them. Per round,
batched / one and batched-again / batched at each client count, and the scaling: batched's requests/s at
the most clients over its requests/s at one client, both timed in that round. Each summary is the median
of the rounds' ratios with a bootstrap 90% interval (mnist_rnn.measure); the scaling's verdict is against
4x. p50/p99 latency per variant are medians over its rounds. The load comes from ApacheBench (`ab`;
apt-get install apache2-utils). Only 127.0.0.1 is contacted; the servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mnist_rnn.execution import cpu_description
from mnist_rnn.measure import summarise

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docs_figures import serve_load_table  # noqa: E402  (the scripts folder is not a package)
from serve_latency import start  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"one": ["--max-batch", "1"], "batched": [], "batched-again": []}
SCALING_TARGET = 4.0  # issue #23: 32 clients get at least 4x the requests/s of one client


def burst(url: str, picture: Path, requests: int, clients: int) -> tuple[float, dict[str, float]]:
    """`requests` uploads, `clients` in flight at a time, sent by ApacheBench (`ab`, C: a Python client
    would take a core of this 2-core machine away from the server): (requests per second, p50/p99 ms)."""
    command = ["ab", "-q", "-n", str(requests), "-c", str(clients), "-p", str(picture), "-T", "image/png"]
    out = subprocess.run([*command, f"{url}/predict"], capture_output=True, text=True, check=True).stdout
    failed = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)", out)
    # ab counts a body whose length differs from the first one's as failed: the probabilities of a request
    # that shared a model call may print a digit longer. Connections, receives, exceptions and non-2xx count.
    if (failed and any(int(n) for n in failed.groups())) or "Non-2xx responses" in out:
        raise SystemExit(f"requests failed:\n{out}")
    rate = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    within = dict(re.findall(r"^\s+(\d+)%\s+(\d+)", out, flags=re.MULTILINE))
    return rate, {"p50": float(within["50"]), "p99": float(within["99"])}


def measure(
    urls: dict[str, str], picture: Path, counts: list[int], requests: int, rounds: int
) -> dict[str, Any]:
    rng = random.Random(0)
    for clients in counts:  # warm-up: every batch size the servers will meet is traced once
        for url in urls.values():
            burst(url, picture, requests, clients)
    rates: dict[int, dict[str, list[float]]] = {c: {n: [] for n in urls} for c in counts}
    p50: dict[int, dict[str, list[float]]] = {c: {n: [] for n in urls} for c in counts}
    p99: dict[int, dict[str, list[float]]] = {c: {n: [] for n in urls} for c in counts}
    for _ in range(rounds):
        slices = [(clients, name) for clients in counts for name in urls]
        rng.shuffle(slices)
        for clients, name in slices:
            rate, ms = burst(urls[name], picture, requests, clients)
            rates[clients][name].append(rate)
            p50[clients][name].append(ms["p50"])
            p99[clients][name].append(ms["p99"])
    results = []
    for clients in counts:
        r = rates[clients]
        results.append({
            "clients": clients,
            "requests_per_round": requests,
            "rounds": rounds,
            "requests_per_second": {name: float(np.median(v)) for name, v in r.items()},
            "p50_ms": {name: float(np.median(ms)) for name, ms in p50[clients].items()},
            "p99_ms": {name: float(np.median(ms)) for name, ms in p99[clients].items()},
            "batched_over_one": summarise([b / o for b, o in zip(r["batched"], r["one"], strict=True)]),
            "aa_batched_again_over_batched": summarise(
                [a / b for a, b in zip(r["batched-again"], r["batched"], strict=True)]
            ),
        })  # fmt: skip
    most, fewest = max(counts), min(counts)

    def scaling(name: str) -> dict[str, Any]:
        ratios = [m / f for m, f in zip(rates[most][name], rates[fewest][name], strict=True)]
        return {
            "clients": [fewest, most],
            "target": SCALING_TARGET,
            **summarise(ratios, target=SCALING_TARGET),
        }

    # batched-again's scaling is the control: the same server, so the same figure up to the noise
    return {"results": results, "scaling": scaling("batched"), "scaling_again": scaling("batched-again")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--workers", type=int, default=1, help="serve --workers for every server")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--requests", type=int, default=600, help="per variant, client count and round: ~1-3 s each"
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--picture", type=Path, default=REPO / "tests/data/digits/7_dejavu-sans_0.png")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if shutil.which("ab") is None:
        raise SystemExit("needs ApacheBench: apt-get install apache2-utils")
    workers = ["--workers", str(args.workers)]
    servers = {name: start(args.run, [*extra, *workers]) for name, extra in VARIANTS.items()}
    try:
        urls = {name: url for name, (_, url) in servers.items()}
        measured = measure(urls, args.picture, args.clients, args.requests, args.rounds)
    finally:
        for server, _ in servers.values():
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
    report = {
        "cpu": cpu_description(),
        "run": args.run.name,
        "picture": args.picture.name,
        "workers": args.workers,
        **measured,
    }
    print(serve_load_table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
