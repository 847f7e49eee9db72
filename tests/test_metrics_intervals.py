"""Interval formulas against exact binomial sums (fractions), exact coverage by enumeration, and the
proportion interval of the bootstrap against the percentile interval it replaces for rare events."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from create_bench.errors import MetricInputError
from create_bench.metrics.bootstrap import (
    Proportion,
    bootstrap_ci,
    percentile_interval,
    proportion_interval,
)
from create_bench.metrics.intervals import (
    betainc,
    betaincinv,
    binomial_p_value,
    clopper_pearson,
    effective_size,
    holm,
    normal_p_value,
)


def _upper_tail(k: int, n: int, p: Fraction) -> float:
    """P(Bin(n, p) >= k), exactly."""
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


@pytest.mark.parametrize(
    "k,n,p",
    [(1, 1, "3/10"), (2, 4, "2/5"), (5, 24, "1/10"), (3, 200, "1/200"), (12, 60, "1/4"), (40, 60, "1/4")],
)
def test_betainc_is_the_binomial_tail(k: int, n: int, p: str) -> None:
    q = Fraction(p)
    assert betainc(k, n - k + 1, float(q)) == pytest.approx(_upper_tail(k, n, q), rel=1e-11, abs=1e-15)


def test_betaincinv_inverts() -> None:
    for a, b, q in [(0.5, 0.5, 0.3), (3.0, 198.0, 0.025), (30.5, 1970.5, 0.975), (1.0, 1.0, 0.7)]:
        x = betaincinv(a, b, q)
        assert betainc(a, b, x) == pytest.approx(q, abs=1e-12)
    assert betainc(1.0, 1.0, 0.37) == pytest.approx(0.37)  # uniform


@pytest.mark.parametrize("x,n", [(0, 10), (3, 20), (10, 10), (1, 200), (7, 50)])
def test_clopper_pearson_bounds_solve_the_tail_equations(x: int, n: int) -> None:
    lo, hi = clopper_pearson(x, n, 0.95)
    if x == 0:
        assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / n))
    else:
        assert _upper_tail(x, n, Fraction(lo)) == pytest.approx(0.025, abs=1e-10)
    if x == n:
        assert hi == 1.0
    else:
        assert 1 - _upper_tail(x + 1, n, Fraction(hi)) == pytest.approx(0.025, abs=1e-10)


@pytest.mark.parametrize("n,p0", [(200, 0.005), (200, 0.025), (2000, 0.005), (50, 0.3)])
def test_clopper_pearson_covers_at_least_nominal(n: int, p0: float) -> None:
    """Exact coverage by enumeration of every count (the percentile bootstrap of 0 hits is [0, 0])."""
    pmf = [
        math.exp(
            math.lgamma(n + 1)
            - math.lgamma(x + 1)
            - math.lgamma(n - x + 1)
            + x * math.log(p0)
            + (n - x) * math.log1p(-p0)
        )
        for x in range(n + 1)
    ]
    assert sum(pmf) == pytest.approx(1.0)
    covered = sum(pr for x, pr in enumerate(pmf) if pr > 1e-15 and binomial_p_value(x, n, p0) >= 0.05)
    assert covered >= 0.95
    cover_ci = sum(
        pr for x, pr in enumerate(pmf) if pr > 1e-15 and (lambda c: c[0] <= p0 <= c[1])(clopper_pearson(x, n))
    )
    assert cover_ci == pytest.approx(covered, abs=1e-12)  # the p-value inverts the interval


def test_p_value_is_below_alpha_exactly_outside_the_interval() -> None:
    for x, n in [(3, 2000), (2.5, 180.3), (0, 200), (17, 40)]:
        lo, hi = clopper_pearson(x, n, 0.99)
        for p0 in np.linspace(0.0005, 0.9995, 60):
            inside = lo <= p0 <= hi
            assert (binomial_p_value(x, n, float(p0)) >= 0.01) == inside, (x, n, p0)


def test_holm_against_a_naive_version() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = rng.random(7) ** 3
        k = len(p)
        order = np.argsort(p)
        want = np.empty(k)
        running = 0.0
        for i, j in enumerate(order):
            running = max(running, min(1.0, (k - i) * p[j]))
            want[j] = running
        np.testing.assert_allclose(holm(list(p)), want)
    with pytest.raises(MetricInputError):
        holm([0.5, 1.5])


def test_effective_size_and_normal_p_value() -> None:
    assert effective_size(0.1, 0.09 / 100, 1000) == pytest.approx(100.0)  # design effect 10
    assert effective_size(0.1, 0.09 / 5000, 1000) == 1000.0  # never above the number of queries
    assert effective_size(0.0, 0.0, 1000) == 1000.0 and effective_size(0.3, 0.0, 10) == 10.0
    assert normal_p_value(1.96, 1.0, 0.0) == pytest.approx(0.05, abs=1e-4)
    assert normal_p_value(5.0, 0.0, 5.0) == 1.0 and normal_p_value(5.0, 0.0, 4.0) == 0.0


def test_proportion_interval_of_rare_hits_covers_what_the_percentile_misses() -> None:
    """One success among 200 queries (each its own unit): the bootstrap percentile interval is
    [0, 1.5] x100-ish and misses nothing here, but with no success it is [0, 0]; the proportion
    interval is the exact binomial one at n = 200."""
    hits = np.zeros(200)
    stat = lambda w: {"R@1": 100 * (w @ hits) / w.sum(axis=1)}  # noqa: E731
    ci = bootstrap_ci(stat, 200, n_boot=500, seed=0, proportions={"R@1": Proportion(200)})
    assert ci["R@1"][0] == 0.0 and ci["R@1"][1] == pytest.approx(100 * (1 - 0.025 ** (1 / 200)))
    assert bootstrap_ci(stat, 200, n_boot=500, seed=0)["R@1"] == [0.0, 0.0]  # the percentile interval
    hits[:3] = 1
    ci = bootstrap_ci(stat, 200, n_boot=2000, seed=0, proportions={"R@1": Proportion(200)})
    lo, hi = clopper_pearson(3, 200)
    assert ci["R@1"] == pytest.approx([100 * lo, 100 * hi], rel=0.05)  # n_eff ~ 200 from the resamples


def test_proportion_interval_widens_with_clustering() -> None:
    """Hits that come in whole videos (10 queries each) have a design effect near 10: the interval
    is that of ~1/10 the queries, as wide as the percentile interval of the video resamples."""
    rng = np.random.default_rng(3)
    per_video = np.repeat((rng.random(100) < 0.3).astype(float), 10)  # 100 videos x 10 identical queries
    owner = np.repeat(np.arange(100), 10)
    counts = np.bincount(owner, minlength=100).astype(float)

    def stat(w: np.ndarray) -> dict[str, np.ndarray]:
        return {"R@1": 100 * (w @ np.bincount(owner, per_video, 100)) / (w @ counts)}

    from create_bench.metrics.bootstrap import bootstrap_samples, observed

    samples = bootstrap_samples({"": stat}, 100, n_boot=2000, seed=0)[""]["R@1"]
    value = observed(stat, 100)["R@1"]
    prop = proportion_interval(value, samples, Proportion(1000))
    perc = percentile_interval(samples)
    assert (prop[1] - prop[0]) == pytest.approx(perc[1] - perc[0], rel=0.15)
    naive = clopper_pearson(value / 100 * 1000, 1000)
    assert prop[1] - prop[0] > 2.5 * 100 * (
        naive[1] - naive[0]
    )  # far wider than treating queries as independent
