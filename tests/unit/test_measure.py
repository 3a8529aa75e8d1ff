"""Paired ratios and their summary: the interval decides the verdict, not the median."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_rnn.measure import neighbour_ratio, summarise


def test_a_neighbour_ratio_uses_both_sides_of_the_other_slice() -> None:
    assert neighbour_ratio(100.0, 50.0, 400.0) == pytest.approx(4.0)  # sqrt(100 * 400) / 50
    assert neighbour_ratio(100.0, 50.0, None) == pytest.approx(2.0)


def test_a_slow_spell_that_hits_a_pair_leaves_its_ratio_alone() -> None:
    # the machine halves its speed for the second round: both variants' rates halve, the ratio does not
    fast = neighbour_ratio(120.0, 100.0, 120.0)
    slow = neighbour_ratio(60.0, 50.0, 60.0)
    assert fast == pytest.approx(slow) == pytest.approx(1.2)


def test_the_verdict_is_decided_only_by_a_whole_interval(rng: np.random.Generator) -> None:
    above = summarise(1.2 + rng.normal(0, 0.02, 30))
    assert above["verdict"] == "above" and above["ci90"][0] > 1.0 and above["pairs"] == 30
    below = summarise(0.8 + rng.normal(0, 0.02, 30))
    assert below["verdict"] == "below" and below["ci90"][1] < 1.0
    straddling = summarise(1.02 + rng.normal(0, 0.2, 12))
    low, high = straddling["ci90"]
    assert low < 1.0 < high and straddling["verdict"] == "not decided"
    assert low <= straddling["median"] <= high


def test_the_interval_narrows_with_more_pairs_and_is_reproducible(rng: np.random.Generator) -> None:
    ratios = 1.0 + rng.normal(0, 0.1, 200)
    few, many = summarise(ratios[:10]), summarise(ratios)
    assert np.diff(many["ci90"])[0] < np.diff(few["ci90"])[0]
    assert summarise(ratios) == many  # a fixed bootstrap seed: the same figures every time


def test_nothing_measured_says_so() -> None:
    assert summarise([]) == {"median": None, "ci90": None, "pairs": 0, "verdict": "not measured"}
