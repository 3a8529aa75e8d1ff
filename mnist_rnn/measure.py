"""Paired speed ratios that hold on a noisy machine (scripts/bench.py, scripts/ab_runs.py).

These machines run a core at one of two speeds about 1.7x apart, in spells of seconds, and any other
process takes a core away. A median of whole runs then decides little: two identical variants land as far
apart as the variants under test. What holds is to time the variants in short slices, next to each other,
many times, and to compare each slice with its neighbours: within a spell the machine's speed is the same
for both. The summary of such paired ratios is their median, with a bootstrap interval over the pairs,
and a verdict that says "not decided" when the interval straddles the target.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.90
BOOTSTRAP_SAMPLES = 2000


def neighbour_ratio(subject_before: float, other: float, subject_after: float | None) -> float:
    """The subject's rate over another variant's, from one slice of the other and the subject's slices
    either side of it (their geometric mean: a slow spell that starts or ends mid-way hits both sides)."""
    subject = subject_before if subject_after is None else (subject_before * subject_after) ** 0.5
    return subject / other


def summarise(ratios: Sequence[float], target: float = 1.0, seed: int = 0) -> dict[str, object]:
    """Median of paired ratios, a bootstrap interval of the median (90%), and the verdict against
    `target`: "above" or "below" only when the whole interval is on that side."""
    values = np.asarray(ratios, dtype=np.float64)
    if len(values) == 0:
        return {"median": None, "ci90": None, "pairs": 0, "verdict": "not measured"}
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(BOOTSTRAP_SAMPLES, len(values)), replace=True), axis=1)
    tail = (1.0 - CONFIDENCE) / 2
    low, high = (float(q) for q in np.quantile(medians, [tail, 1.0 - tail]))
    verdict = "above" if low > target else "below" if high < target else "not decided"
    return {
        "median": float(statistics.median(values)),
        "ci90": [low, high],
        "pairs": len(values),
        "verdict": verdict,
    }
