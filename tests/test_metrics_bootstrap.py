"""Bootstrap intervals and the paired test against naive resampling loops."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import create_bench.metrics.bootstrap as bootstrap
from create_bench.errors import MetricInputError
from create_bench.metrics.bootstrap import (
    bootstrap_ci,
    bootstrap_cis,
    paired_bootstrap_test,
    resample_weights,
    weighted_median,
)


def mean_stat(x: np.ndarray):
    return lambda w: {"mean": w @ x / w.sum(axis=1)}


def test_resample_weights_are_seeded_counts() -> None:
    w = resample_weights(50, 20, seed=3)
    assert w.shape == (20, 50) and (w.sum(axis=1) == 50).all() and w.min() >= 0
    np.testing.assert_array_equal(w, resample_weights(50, 20, seed=3))
    assert not np.array_equal(w, resample_weights(50, 20, seed=4))
    # the same draws as a naive index-resampling loop with the same generator
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 50, size=(20, 50), dtype=np.int64)
    naive = np.stack([np.bincount(row, minlength=50) for row in idx])
    np.testing.assert_array_equal(w, naive)


def test_ci_equals_naive_percentile_bootstrap() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    got = bootstrap_ci(mean_stat(x), 200, n_boot=500, seed=7)["mean"]
    idx = np.random.default_rng(7).integers(0, 200, size=(500, 200), dtype=np.int64)
    means = x[idx].mean(axis=1)
    assert got == pytest.approx(list(np.percentile(means, [2.5, 97.5])), abs=1e-12)
    assert got[0] < x.mean() < got[1]


def test_cis_share_resamples_and_shrink_with_n() -> None:
    x = np.random.default_rng(1).normal(size=400)
    both = bootstrap_cis({"a": mean_stat(x), "b": mean_stat(x)}, 400, n_boot=300, seed=0)
    assert both["a"] == both["b"]
    wide = bootstrap_ci(mean_stat(x[:40]), 40, n_boot=300, seed=0)["mean"]
    narrow = both["a"]["mean"]
    assert narrow[1] - narrow[0] < wide[1] - wide[0]


def test_weighted_median_equals_numpy_median_of_repeats() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        v = rng.integers(0, 10, size=15).astype(float) + rng.random(15).round(1)
        w = rng.integers(0, 4, size=(5, 15))
        w[:, 3] += 1
        got = weighted_median(v, w)
        for b in range(5):
            assert got[b] == np.median(np.repeat(v, w[b]))
    groups = np.array([0, 0, 1, 2, 2])
    wu = np.array([[1, 2, 0], [0, 1, 3]])
    vals = np.array([5.0, 1.0, 2.0, 8.0, 3.0])
    np.testing.assert_array_equal(weighted_median(vals, wu, groups), weighted_median(vals, wu[:, groups]))


def test_paired_test() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(0.5, 1.0, size=300)
    same = paired_bootstrap_test(mean_stat(a), mean_stat(a.copy()), 300, n_boot=200)["mean"]
    assert same["delta"] == 0.0 and same["p_value"] == 1.0
    better = paired_bootstrap_test(mean_stat(a + 0.5), mean_stat(a), 300, n_boot=200)["mean"]
    assert better["delta"] == pytest.approx(0.5) and better["p_value"] == pytest.approx(1 / 201)
    assert better["ci"][0] == pytest.approx(0.5) and better["ci"][1] == pytest.approx(0.5)
    noisy = paired_bootstrap_test(
        mean_stat(a), mean_stat(rng.normal(0.5, 1.0, size=300)), 300, n_boot=500, seed=1
    )
    assert noisy["mean"]["p_value"] > 0.01 or abs(noisy["mean"]["delta"]) > 0.2
    with pytest.raises(MetricInputError, match="different metrics"):
        paired_bootstrap_test(mean_stat(a), lambda w: {"other": w @ a}, 300, n_boot=10)


def test_bad_arguments() -> None:
    with pytest.raises(MetricInputError):
        resample_weights(0, 10, seed=0)
    with pytest.raises(MetricInputError):
        resample_weights(5, 0, seed=0)
    with pytest.raises(MetricInputError, match="level"):
        bootstrap_ci(mean_stat(np.ones(3)), 3, level=95)


def test_doctests() -> None:
    result = doctest.testmod(bootstrap)
    assert result.attempted > 0 and result.failed == 0


def _cumsum_median(values: np.ndarray, weights: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """The reference: a running sum over every sorted value of every row, then a binary search."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    cols = order if groups is None else np.asarray(groups)[order]
    cum = np.cumsum(np.atleast_2d(weights).astype(np.float64)[:, cols], axis=1)
    lo = [np.searchsorted(c, (c[-1] - 1) // 2, side="right") for c in cum]
    hi = [np.searchsorted(c, c[-1] // 2, side="right") for c in cum]
    return (values[order][lo] + values[order][hi]) / 2.0


def test_blocked_weighted_median_equals_the_running_sum() -> None:
    rng = np.random.default_rng(7)
    for trial in range(200):
        n, units, rows = int(rng.integers(1, 900)), int(rng.integers(1, 50)), int(rng.integers(1, 30))
        values = rng.integers(0, 25, n).astype(float) + (rng.random(n).round(1) if trial % 2 else 0.0)
        groups = rng.integers(0, units, n) if trial % 3 else None
        w = rng.integers(0, 3, (rows, units if groups is not None else n))
        w[:, 0 if groups is None else groups[0]] += 1  # every row has weight
        np.testing.assert_array_equal(weighted_median(values, w, groups), _cumsum_median(values, w, groups))
    # CREATE's size: 50,000 text queries of 5,000 videos, 1,000 resamples
    values = rng.integers(1, 5000, 50_000).astype(float)
    groups = np.repeat(np.arange(5000), 10)
    w = resample_weights(5000, 300, seed=0)
    np.testing.assert_array_equal(weighted_median(values, w, groups), _cumsum_median(values, w, groups))


def test_weighted_median_rejects_an_empty_resample() -> None:
    for w in (np.array([[1, 0], [0, 0]]), np.array([[0.5, 0.0], [0.0, 0.0]])):
        with pytest.raises(MetricInputError, match="no weight"):
            weighted_median(np.array([1.0, 2.0]), w)
