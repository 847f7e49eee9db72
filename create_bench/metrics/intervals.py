"""Interval and test formulas behind the bootstrap intervals and the chance check (layer 2).

- :func:`betainc`: the regularised incomplete beta function ``I_x(a, b)`` (a continued fraction;
  for integers, ``I_p(k, n - k + 1) = P(Bin(n, p) >= k)``), and its inverse in ``x``.
- :func:`clopper_pearson` and :func:`binomial_p_value`: the exact binomial interval and the
  two-sided test it inverts (twice the smaller tail), for a possibly non-integer count ``x`` out of
  an effective size ``n`` (Korn and Graubard 1998): ``p0`` lies outside the level-``1 - a``
  interval exactly when the p-value is below ``a``.
- :func:`effective_size`: ``n_eff = p(1 - p) / var``, the binomial size with the observed variance.
- :func:`normal_p_value`: two-sided p-value of ``(estimate - value) / se``.
- :func:`holm`: Holm's step-down adjusted p-values (family-wise error control for any dependence).

Only the standard library and numpy: no scipy.

>>> round(betainc(2, 3, 0.4), 10)  # P(Bin(4, 0.4) >= 2)
0.5248
>>> [round(x, 4) for x in clopper_pearson(0, 10, 0.95)]  # upper: 1 - 0.025 ** (1 / 10)
[0.0, 0.3085]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from create_bench.errors import MetricInputError

_TINY = 1e-300
_EPS = 1e-15


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of ``I_x(a, b)`` (DLMF 8.17.22), by the modified Lentz method:
    ``1 / (1 + d1 / (1 + d2 / (1 + ...)))`` with ``d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))``
    and ``d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m))``. Converges fast for ``x < (a + 1) / (a + b + 2)``."""
    f, c, d = _TINY, _TINY, 0.0
    for j in range(1, 100_000):
        if j == 1:
            num = 1.0
        else:
            i = j - 1  # index of the partial numerator d_i
            m = i // 2
            if i % 2:
                num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
            else:
                num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + num / c
        c = c if abs(c) > _TINY else _TINY
        f *= c * d
        if abs(c * d - 1.0) < _EPS:
            return f
    raise MetricInputError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")  # pragma: no cover


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)`` for ``a, b > 0`` and ``0 <= x <= 1``."""
    if not (a > 0 and b > 0):
        raise MetricInputError(f"incomplete beta needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise MetricInputError(f"incomplete beta needs 0 <= x <= 1, got {x}")
    if x == 0.0 or x == 1.0:
        return x
    if x > (a + 1.0) / (a + b + 2.0):  # the symmetric side converges faster
        return 1.0 - betainc(b, a, 1.0 - x)
    log_front = a * math.log(x) + b * math.log1p(-x) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    return math.exp(log_front) / a * _beta_cf(a, b, x)


def betaincinv(a: float, b: float, q: float) -> float:
    """The ``x`` with ``I_x(a, b) = q`` (bisection: ``I`` increases in ``x``; 80 halvings of [0, 1])."""
    if not 0.0 <= q <= 1.0:
        raise MetricInputError(f"probability must be in [0, 1], got {q}")
    lo, hi = 0.0, 1.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _upper_tail(x: float, n: float, p: float) -> float:
    """``P(X >= x)``, ``X ~ Bin(n, p)``, continued to real ``x`` (``I_p(x, n - x + 1)``; 1 at ``x = 0``)."""
    return 1.0 if x <= 0 else betainc(x, n - x + 1.0, p)


def _lower_tail(x: float, n: float, p: float) -> float:
    """``P(X <= x)`` continued to real ``x`` (``1 - I_p(x + 1, n - x)``; 1 at ``x = n``)."""
    return 1.0 if x >= n else 1.0 - betainc(x + 1.0, n - x, p)


def _check_count(x: float, n: float) -> None:
    if not n > 0:
        raise MetricInputError(f"binomial size must be > 0, got {n}")
    if not 0.0 <= x <= n:
        raise MetricInputError(f"binomial count must be in [0, {n}], got {x}")


def clopper_pearson(x: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion with ``x`` successes out of ``n``.

    ``x`` and ``n`` may be real (an effective count and size). Bounds solve
    ``P(X >= x | lo) = (1 - level) / 2`` and ``P(X <= x | hi) = (1 - level) / 2``.
    """
    _check_count(x, n)
    tail = (1.0 - level) / 2.0
    lo = 0.0 if x <= 0 else betaincinv(x, n - x + 1.0, tail)
    hi = 1.0 if x >= n else betaincinv(x + 1.0, n - x, 1.0 - tail)
    return lo, hi


def binomial_p_value(x: float, n: float, p0: float) -> float:
    """Two-sided p-value of ``p = p0`` (twice the smaller tail, at most 1): the test that
    :func:`clopper_pearson` inverts.

    >>> round(binomial_p_value(3, 2000, 0.005), 4)  # 3 hits where 10 are expected
    0.0204
    """
    _check_count(x, n)
    if not 0.0 <= p0 <= 1.0:
        raise MetricInputError(f"null proportion must be in [0, 1], got {p0}")
    return min(1.0, 2.0 * min(_upper_tail(x, n, p0), _lower_tail(x, n, p0)))


def effective_size(p: float, variance: float, n: int) -> float:
    """``p(1 - p) / variance`` capped at ``n`` (design effect at least 1); ``n`` when ``p`` is 0 or 1
    or the variance is 0 (nothing to estimate the design effect from)."""
    if n < 1:
        raise MetricInputError(f"a proportion needs at least one query, got n={n}")
    if not 0.0 < p < 1.0 or not variance > 0.0:
        return float(n)
    return float(min(n, p * (1.0 - p) / variance))


def normal_p_value(estimate: float, se: float, value: float) -> float:
    """Two-sided p-value of ``estimate = value`` with standard error ``se`` (normal approximation);
    with ``se == 0`` it is 1 when the two are equal and 0 otherwise."""
    if se < 0 or not math.isfinite(se):
        raise MetricInputError(f"standard error must be finite and >= 0, got {se}")
    diff = abs(estimate - value)
    if se == 0.0:
        return 1.0 if diff <= 1e-12 * max(1.0, abs(value)) else 0.0
    return 2.0 * (1.0 - NormalDist().cdf(diff / se))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values: with the ``k`` p-values sorted, the ``i``-th (0-based) becomes
    ``max_{j <= i} min(1, (k - j) p_(j))``. Rejecting every adjusted p-value below ``alpha`` keeps
    the family-wise error at most ``alpha`` whatever the dependence between the tests.

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.size and ((p < 0) | (p > 1) | ~np.isfinite(p)).any():
        raise MetricInputError(f"p-values must be in [0, 1], got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    k = p.size
    adjusted = np.minimum(1.0, (k - np.arange(k)) * p[order])
    adjusted = np.maximum.accumulate(adjusted)
    out = np.empty(k, dtype=np.float64)
    out[order] = adjusted
    return [float(v) for v in out]
