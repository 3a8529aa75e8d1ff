"""Throughput of `POST /predict` under concurrent clients: micro-batching (`--max-batch 64`, the default)
against one model call per request (`--max-batch 1`), measured in one run on real `mnist-rnn serve`
processes on 127.0.0.1.

    python scripts/serve_load.py RUN_DIR [--clients 1 8 32] [--requests 192] [--rounds 6] [--out FILE.json]

Three servers run side by side: `one` (--max-batch 1), `batched` and `batched-again` (both default; the
A/A control). For each client count, every round sends `--requests` uploads of one picture to each server
in turn (a shuffled order, `clients` at a time) and times them; the ratio of a round is batched / one
(and batched-again / batched), and the summary is the median of the rounds' ratios with a bootstrap 90%
interval (mnist_rnn.measure). p50/p99 latency per variant are medians over its rounds. The load comes
from ApacheBench (`ab`; apt-get install apache2-utils). Only 127.0.0.1 is contacted; the servers are
stopped at the end.
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
from serve_latency import start  # noqa: E402  (the scripts folder is not a package)

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"one": ["--max-batch", "1"], "batched": [], "batched-again": []}


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


def measure(urls: dict[str, str], picture: Path, clients: int, requests: int, rounds: int) -> dict[str, Any]:
    rng = random.Random(clients)
    for url in urls.values():  # warm-up: every batch size the server will meet is traced once
        burst(url, picture, requests, clients)
    rates: dict[str, list[float]] = {name: [] for name in urls}
    p50: dict[str, list[float]] = {name: [] for name in urls}
    p99: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(rounds):
        order = list(urls)
        rng.shuffle(order)
        for name in order:
            rate, ms = burst(urls[name], picture, requests, clients)
            rates[name].append(rate)
            p50[name].append(ms["p50"])
            p99[name].append(ms["p99"])
    ratio = [b / o for b, o in zip(rates["batched"], rates["one"], strict=True)]
    control = [a / b for a, b in zip(rates["batched-again"], rates["batched"], strict=True)]
    return {
        "clients": clients,
        "requests_per_round": requests,
        "rounds": rounds,
        "requests_per_second": {name: float(np.median(r)) for name, r in rates.items()},
        "p50_ms": {name: float(np.median(ms)) for name, ms in p50.items()},
        "p99_ms": {name: float(np.median(ms)) for name, ms in p99.items()},
        "batched_over_one": summarise(ratio),
        "aa_batched_again_over_batched": summarise(control),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=192, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--picture", type=Path, default=REPO / "tests/data/digits/7_dejavu-sans_0.png")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if shutil.which("ab") is None:
        raise SystemExit("needs ApacheBench: apt-get install apache2-utils")
    servers = {name: start(args.run, extra) for name, extra in VARIANTS.items()}
    try:
        urls = {name: url for name, (_, url) in servers.items()}
        picture = args.picture
        results = [measure(urls, picture, c, args.requests, args.rounds) for c in args.clients]
    finally:
        for server, _ in servers.values():
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
    report = {
        "cpu": cpu_description(),
        "run": args.run.name,
        "picture": args.picture.name,
        "results": results,
    }
    print(f"POST /predict, one picture, {args.rounds} rounds of {args.requests} requests; {report['cpu']}")
    print("| clients | one req/s | batched req/s | batched / one [90%] | A/A [90%] | p99 ms one / batched |")
    print("|---|---|---|---|---|---|")
    for r in results:
        ratio, aa, rate = r["batched_over_one"], r["aa_batched_again_over_batched"], r["requests_per_second"]
        print(
            f"| {r['clients']} | {rate['one']:.0f} | {rate['batched']:.0f} "
            f"| {ratio['median']:.2f} [{ratio['ci90'][0]:.2f}–{ratio['ci90'][1]:.2f}] "
            f"| {aa['median']:.2f} [{aa['ci90'][0]:.2f}–{aa['ci90'][1]:.2f}] "
            f"| {r['p99_ms']['one']:.0f} / {r['p99_ms']['batched']:.0f} |"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
