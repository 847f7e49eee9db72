"""Chance levels of the retrieval metrics: their exact expected values under random ranking (layer 2).

Random ranking means every query orders the gallery by its own uniformly random permutation. For a
query with ``m`` relevant items among ``M`` gallery items, the rank ``X`` of its best relevant item
(1-based) has the survival function

    P(X > j) = C(M - m, j) / C(M, j) = C(M - j, m) / C(M, m),     j = 0 .. M - m + 1,

so ``P(X <= K) = 1 - C(M - m, K) / C(M, K)`` and ``E[X] = (M + 1) / (m + 1)``. T2V is the case
``m = 1`` (``M`` = number of videos: R@K = K / M, E[X] = (M + 1) / 2); V2T has one query per video
with ``m`` = that video's number of texts and ``M`` = all texts of the kind.

R@K and MnR are means over queries, so their chance levels are the means of the per-query values
(exact whatever the dependence between queries). MdR is the median of the query ranks; its chance
level is the exact expectation of that sample median when the queries' ranks are independent, from
the distribution of order statistics: with ``S(x)`` the number of queries ranked within ``x`` (a sum
of binomials, one per distinct ``m``), ``P(X_(k) > x) = P(S(x) <= k - 1)`` and
``E[X_(k)] = sum_x P(X_(k) > x)``; for an even count the median is the mean of the two middle
order statistics, as ``numpy.median`` takes it. The sum runs over every ``x`` but those where
Hoeffding's inequality puts ``P(S(x) <= k - 1)`` within 1e-9 of 0 or 1; each of its terms is the
CDF of ``S(x)`` summed in closed form from its characteristic function (a product of binomial
ones) at the few tens of DFT frequencies where it is not negligible, on a period that spans the
values ``S(x)`` takes but for a mass below ``e^-40``: exact to about 1e-14 (rounding), and about
10 ms for CREATE's test split. (A dual encoder gives identical texts identical
scores, so on a split where two videos share a text string its random ranking is not exactly a
uniform permutation; CREATE-sample's test titles have 14 such pairs among 2,000, a negligible shift.)

:func:`chance_check` tests every retrieval number of a run against its chance level with
Holm's correction over all of them, so that a model ranking at random is called "consistent with
chance" with probability at least 1 - alpha.

>>> s = chance_scores(200, [1] * 2000)  # T2V on CREATE-sample's test split: 200 videos, 2000 texts
>>> {k: round(v, 4) for k, v in s.items()}
{'R@1': 0.5, 'R@5': 2.5, 'R@10': 5.0, 'MdR': 100.5, 'MnR': 100.5}
>>> s = chance_scores(2000, [10] * 200)  # V2T: each video's 10 texts among 2000
>>> round(s["R@1"], 4), round(s["MnR"], 2)
(0.5, 181.91)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from create_bench.errors import MetricInputError
from create_bench.metrics.bootstrap import Proportion
from create_bench.metrics.intervals import binomial_p_value, effective_size, holm, normal_p_value

DEFAULT_KS = (1, 5, 10)
#: Order-statistic probabilities that Hoeffding's inequality puts closer than this to 0 or 1 are
#: taken as 0 or 1 when summing (the neglected mass changes MdR by < gallery x 1e-9).
_EDGE = 1e-9
#: Each truncation of the Fourier sum of P(S(x) <= k - 1) (the mass of S(x) it aliases or leaves
#: out, the frequencies it drops) changes it by at most e^-_TAIL, about 4e-18.
_TAIL = 40.0
#: Values of x summed at once, and the most x-by-group-by-frequency terms at once (memory).
_CHUNK = 512
_CELLS = 1 << 21


def best_rank_sf(gallery: int, relevant: int) -> np.ndarray:
    """``P(X > j)`` for ``j = 0 .. gallery`` (float64, length ``gallery + 1``), where ``X`` is the
    rank of the best of ``relevant`` items in a uniformly random order of ``gallery`` items.

    >>> best_rank_sf(4, 2).tolist()  # best of 2 among 4: P(X > 1) = 1/2, P(X > 2) = 1/6
    [1.0, 0.5, 0.16666666666666666, 0.0, 0.0]
    """
    _check(gallery, relevant)
    j = np.arange(gallery, dtype=np.float64)
    # P(X > j) = prod_{i < j} (M - m - i) / (M - i): the first j places all hold non-relevant items
    ratios = np.clip((gallery - relevant - j) / (gallery - j), 0.0, 1.0)
    return np.concatenate([[1.0], np.cumprod(ratios)])


def chance_recall(gallery: int, relevant: int, k: int) -> float:
    """``P(X <= k)``: the chance that one of ``relevant`` items lands in the top ``k`` of ``gallery``.

    >>> round(chance_recall(6, 2, 2), 12)  # 1 - C(4, 2) / C(6, 2)
    0.6
    """
    if k < 1:
        raise MetricInputError(f"K of R@K must be >= 1, got {k}")
    if k >= gallery:
        _check(gallery, relevant)
        return 1.0
    return float(1.0 - best_rank_sf(gallery, relevant)[k])


def chance_mean_rank(gallery: int, relevant: int) -> float:
    """``E[X] = (gallery + 1) / (relevant + 1)``."""
    _check(gallery, relevant)
    return (gallery + 1) / (relevant + 1)


def chance_median_rank(gallery: int, relevant: Sequence[int] | np.ndarray) -> float:
    """Expected sample median of the best ranks of independent random-ranking queries, query ``i``
    having ``relevant[i]`` relevant items among ``gallery`` (see the module docstring)."""
    counts = _counts(gallery, relevant)
    n = len(counts)
    uniq, per = np.unique(counts, return_counts=True)
    sfs = [(best_rank_sf(gallery, int(m)), int(c)) for m, c in zip(uniq, per)]
    return _expected_median(sfs, n, gallery)


def chance_scores(
    gallery: int, relevant: Sequence[int] | np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """The chance level of every reported metric, shaped like
    :meth:`~create_bench.metrics.retrieval.RankStats.summary`: R@K x100, MdR and MnR as ranks.

    Args:
        gallery: number of gallery items each query is ranked against.
        relevant: per query, how many gallery items are relevant to it (>= 1).
        ks: the cut-offs K of R@K.
    """
    counts = _counts(gallery, relevant)
    uniq, per = np.unique(counts, return_counts=True)
    weights = per / per.sum()
    sfs = {int(m): best_rank_sf(gallery, int(m)) for m in uniq}
    out: dict[str, float] = {}
    for k in ks:
        if k < 1:
            raise MetricInputError(f"K of R@K must be >= 1, got {k}")
        at = [1.0 if k >= gallery else 1.0 - sfs[int(m)][k] for m in uniq]
        out[f"R@{k}"] = float(100.0 * np.dot(weights, at))
    out["MdR"] = _expected_median([(sfs[int(m)], int(c)) for m, c in zip(uniq, per)], len(counts), gallery)
    out["MnR"] = float(np.dot(weights, (gallery + 1) / (uniq + 1.0)))
    return out


def retrieval_chance(
    texts_per_video: Sequence[int] | np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, dict[str, float]]:
    """Chance levels of both directions of the retrieval protocol for one text kind.

    Args:
        texts_per_video: how many texts of the kind each video of the split has (the protocol's
            reference count: 10 per video on CREATE's test split, 1 under single-reference).

    Returns:
        ``{"t2v": scores, "v2t": scores}``: T2V ranks each of the texts' own video among all
        videos; V2T ranks each video's best own text among all texts.

    >>> c = retrieval_chance([2, 1, 1])  # 3 videos, 4 texts
    >>> c["t2v"]["MnR"], c["v2t"]["MnR"]  # (3 + 1) / 2; mean of 5/3, 5/2, 5/2
    (2.0, 2.2222222222222223)
    """
    counts = np.asarray(texts_per_video, dtype=np.int64).reshape(-1)
    if counts.size == 0:
        raise MetricInputError("retrieval chance needs at least one video")
    if (counts < 1).any():
        raise MetricInputError(f"video {int(np.flatnonzero(counts < 1)[0])} has no text of the kind")
    n_videos, n_texts = int(counts.size), int(counts.sum())
    return {
        "t2v": chance_scores(n_videos, np.ones(n_texts, dtype=np.int64), ks),
        "v2t": chance_scores(n_texts, counts, ks),
    }


# --------------------------------------------------------------------------------------------


def _check(gallery: int, relevant: int) -> None:
    if gallery < 1:
        raise MetricInputError(f"the gallery must have at least one item, got {gallery}")
    if not 1 <= relevant <= gallery:
        raise MetricInputError(f"relevant items must be in [1, {gallery}], got {relevant}")


def _counts(gallery: int, relevant: Sequence[int] | np.ndarray) -> np.ndarray:
    counts = np.asarray(relevant).reshape(-1)
    if counts.size == 0:
        raise MetricInputError("chance levels need at least one query")
    if not np.issubdtype(counts.dtype, np.integer):
        raise MetricInputError(f"relevant counts must be integers, got dtype {counts.dtype}")
    bad = np.flatnonzero((counts < 1) | (counts > gallery))
    if bad.size:
        i = int(bad[0])
        raise MetricInputError(f"query {i}: {int(counts[i])} relevant items outside [1, {gallery}]")
    return counts.astype(np.int64)


def _count_cdf(sfs: list[tuple[np.ndarray, int]], n: int, xs: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """``P(S(x) <= k - 1)`` for each ``x`` in ``xs`` (rows) and ``k`` in ``ks`` (columns), where
    ``S(x)`` is the number of the ``n`` queries ranked within ``x``; ``sfs`` holds, per distinct
    relevant count, ``P(X > j)`` for every ``j`` and how many queries have that count.

    ``S(x)`` is a sum of independent binomials ``Bin(n_g, p_g)``, ``p_g = 1 - sf_g[x]``. Its CDF is
    summed in closed form from its characteristic function on the ``size`` points of a discrete
    Fourier transform (:func:`_fourier_cdf`), ``size`` covering the values ``S`` takes but for a
    mass below ``2 e^-_TAIL`` (Bernstein's inequality; when ``size`` is smaller than ``n + 1`` that
    mass is aliased or left out). With the dropped frequencies, the result is within ``4 e^-_TAIL``
    of the exact CDF, besides rounding (about 1e-14).
    """
    xs = np.asarray(xs, dtype=np.int64)
    q = np.stack([sf[xs] for sf, _ in sfs], axis=1)  # (x, group): P(a query ranks beyond x)
    p = 1.0 - q
    weight = np.array([count for _, count in sfs], dtype=np.float64)
    mean, var = p @ weight, (p * q) @ weight
    # P(S - mean >= t) and P(S - mean <= -t) are both <= e^-TAIL (Bernstein, summands within 1)
    spread = _TAIL / 3 + np.sqrt(_TAIL**2 / 9 + 2 * _TAIL * var)
    size = 2 * math.ceil(float(spread.max())) + 3  # odd: no Nyquist term
    if size >= n + 1:  # the whole support 0 .. n fits: nothing aliased
        size, start = n + 1 + n % 2, np.zeros(len(xs), dtype=np.int64)
    else:  # S in [start, start + size) but for the tails
        start = np.clip(np.ceil(mean - spread), 0, n + 1 - size).astype(np.int64)
    out = _fourier_cdf(p, q, weight, float(var.min()), size, start, ks)
    return np.clip(out, 0.0, 1.0)


def _fourier_cdf(
    p: np.ndarray,
    q: np.ndarray,
    weight: np.ndarray,
    var: float,
    size: int,
    start: np.ndarray,
    ks: Sequence[int],
) -> np.ndarray:
    """``P(start <= S <= k - 1)`` of ``S`` aliased modulo ``size`` (odd), per row of ``p``/``q``
    (``(x, group)``) and ``k`` in ``ks``.

    With ``theta_f = 2 pi f / size`` and ``psi_f = E[exp(-i theta_f (S - start))]``, summing the
    inverse DFT over ``y = 0 .. K = k - 1 - start`` gives ``(K + 1) / size + (2 / size) sum_f
    |psi_f| D_f cos(arg psi_f + theta_f K / 2)``, ``D_f = sin(theta_f (K + 1) / 2) / sin(theta_f
    / 2)`` (``f`` and ``size - f`` are conjugates). ``|psi_f| <= exp(-var (1 - cos theta_f))``
    falls with ``f``: the frequencies where it is below ``e^-_TAIL / size`` are left out (changing
    the sum by < ``e^-_TAIL``). Integer multiples of ``pi / size`` are reduced exactly, in integers.
    """
    cutoff = _TAIL + math.log(size)
    top = (size - 1) // 2
    if 2 * var > cutoff:  # beyond theta*, var (1 - cos theta) > cutoff
        top = min(top, math.ceil(size * math.acos(1.0 - cutoff / var) / (2 * math.pi)))
    if len(start) > 1 and len(start) * p.shape[1] * top > _CELLS:  # in halves, to bound memory
        mid = len(start) // 2
        parts = (slice(None, mid), slice(mid, None))
        return np.vstack([_fourier_cdf(p[s], q[s], weight, var, size, start[s], ks) for s in parts])
    f = np.arange(1, top + 1, dtype=np.int64)
    theta = 2 * np.pi * f / size
    modulus, whole, turn = _spectrum(p, q, weight, theta)
    out = np.empty((len(start), len(ks)), dtype=np.float64)
    for col, k in enumerate(ks):
        big_k = np.clip(k - 1 - start, -1, size - 1)[:, None]
        half = np.sin(np.pi * ((f * (big_k + 1)) % (2 * size)) / size) / np.sin(theta / 2)
        shift = (f * (2 * start[:, None] + big_k - 2 * whole[:, None])) % (2 * size)
        phase = np.pi * shift / size - turn
        out[:, col] = (big_k[:, 0] + 1) / size + (2 / size) * (modulus * half * np.cos(phase)).sum(axis=1)
    return out


def _spectrum(
    p: np.ndarray, q: np.ndarray, weight: np.ndarray, theta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``|phi(theta)|`` of ``S = sum_g Bin(n_g, p_g)`` (``phi(theta) = E[exp(-i theta S)]``, rows
    ``x`` of ``p``/``q``, columns ``theta``) and its phase as ``-(theta * whole + turn)``, ``whole``
    an integer per row, so that the large part of the phase can be reduced exactly.

    ``arg(q + p e^(i theta)) = p theta + delta``, ``delta = atan2(p sin(q theta) - q sin(p theta),
    q cos(p theta) + p cos(q theta))`` (the factor turned back by ``p theta``), whose rounding is
    of order ``eps p q theta``; ``n_g p_g theta`` is taken as ``n_g theta - n_g q_g theta`` where
    ``q_g < p_g``, the integer ``n_g`` going to ``whole``, so that no rounding scales with ``E[S]``.
    """
    p3, q3, t = p[:, :, None], q[:, :, None], theta[None, None, :]
    one_minus_cos = 2 * np.sin(theta / 2) ** 2  # without cancellation
    log_abs = 0.5 * np.einsum("xgf,g->xf", np.log1p(-2 * p3 * q3 * one_minus_cos), weight)
    delta = np.arctan2(p3 * np.sin(q3 * t) - q3 * np.sin(p3 * t), q3 * np.cos(p3 * t) + p3 * np.cos(q3 * t))
    upper = q < p
    whole = (upper * weight).sum(axis=1).astype(np.int64)
    linear = (np.where(upper, -q, p) * weight).sum(axis=1)
    turn = np.einsum("xgf,g->xf", delta, weight) + linear[:, None] * theta
    return np.exp(log_abs), whole, turn


def _expected_median(sfs: list[tuple[np.ndarray, int]], n: int, gallery: int) -> float:
    """``numpy.median``'s expectation: the mean of ``E[X_(k)]`` over the middle order statistics
    ``k`` (one for odd ``n``, two for even), with ``E[X_(k)] = sum_{x >= 0} P(S(x) <= k - 1)``.

    The sum is exact (:func:`_count_cdf`) for every ``x`` but those where Hoeffding's inequality
    puts the probability within :data:`_EDGE` of 1 (``E[S(x)] <= k - t``) or of 0
    (``E[S(x)] >= k - 1 + t``), ``t = sqrt(n ln(1 / _EDGE) / 2)`` (plus a unit of margin for
    rounding): those count as 1 or 0. ``E[S(x)]`` rises with ``x``, so they are the two ends.
    """
    ks = sorted({(n + 1) // 2, n // 2 + 1})
    mean = sum(count * (1.0 - sf) for sf, count in sfs)  # E[S(x)], x = 0 .. gallery
    t = math.sqrt(n * math.log(1.0 / _EDGE) / 2) + 1.0
    lo = max(int(np.searchsorted(mean, ks[0] - t, side="right")) - 1, 0)  # P(S(0) <= k - 1) = 1
    hi = min(int(np.searchsorted(mean, ks[-1] - 1 + t, side="left")), gallery)  # S(gallery) = n
    xs = np.arange(lo + 1, hi)
    total = np.zeros(len(ks))
    for at in range(0, len(xs), _CHUNK):
        total += _count_cdf(sfs, n, xs[at : at + _CHUNK], ks).sum(axis=0)
    return float(lo + 1 + total.mean())


# --------------------------------------------------------------------------------------------
# is a run consistent with chance?

#: How each metric's p-value is computed (goes into the results).
CHANCE_TESTS = {
    "R@K": "exact binomial test at the effective sample size (the test its interval inverts)",
    "MdR": "normal approximation with the bootstrap standard error",
    "MnR": "normal approximation with the bootstrap standard error",
}


def chance_check(
    scores: Mapping[str, Mapping[str, float]],
    chance: Mapping[str, Mapping[str, float]],
    samples: Mapping[str, Mapping[str, np.ndarray]],
    proportions: Mapping[str, Mapping[str, Proportion]],
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Test every retrieval number against its chance level, with Holm's correction over them all.

    Each number gets a two-sided p-value of "its expected value is the chance level" from the same
    video resamples as its interval (:data:`CHANCE_TESTS`); the p-values of the whole family (every
    group and metric in ``chance``) are Holm-adjusted, so the probability that a model at chance has
    *any* number flagged is at most ``alpha``. The run is consistent with chance when none is.

    Args:
        scores: group -> metric -> observed value.
        chance: group -> metric -> chance level (:func:`retrieval_chance`); defines the family.
        samples: group -> metric -> bootstrap resamples of the metric (video units).
        proportions: group -> metric -> :class:`Proportion` for the R@K metrics.
        alpha: the family-wise error rate.

    Returns:
        ``{"alpha", "correction": "holm", "family", "tests", "p_values", "adjusted",
        "differs": [{"group", "metric", "direction"}], "consistent", "statement"}``.
    """
    if not 0.0 < alpha < 1.0:
        raise MetricInputError(f"alpha must be in (0, 1), got {alpha}")
    keys = [(g, m) for g in chance for m in chance[g] if m in (scores.get(g) or {})]
    if not keys:
        raise MetricInputError("no retrieval number to compare with chance")
    raw = [
        _p_value(scores[g][m], chance[g][m], samples[g][m], (proportions.get(g) or {}).get(m))
        for g, m in keys
    ]
    adjusted = holm(raw)
    p_values: dict[str, dict[str, float]] = {}
    adj: dict[str, dict[str, float]] = {}
    differs = []
    for (g, m), p, a in zip(keys, raw, adjusted):
        p_values.setdefault(g, {})[m] = p
        adj.setdefault(g, {})[m] = a
        if a < alpha:
            higher_better = m.startswith("R@")
            better = (scores[g][m] > chance[g][m]) == higher_better
            differs.append({"group": g, "metric": m, "direction": "better" if better else "worse"})
    k = len(keys)
    if not differs:
        statement = (
            f"All {k} retrieval numbers are consistent with chance (random ranking): no Holm-adjusted "
            f"two-sided p-value is below {alpha:g}, a test whose family-wise error over the {k} numbers "
            f"is at most {alpha:.0%}."
        )
    else:
        listed = ", ".join(f"{d['group']} {d['metric']} ({d['direction']})" for d in differs)
        statement = (
            f"{len(differs)} of {k} retrieval numbers differ from chance (random ranking) at a "
            f"family-wise error of {alpha:.0%} (Holm-adjusted two-sided p < {alpha:g}): {listed}."
        )
    return {
        "alpha": alpha,
        "correction": "holm",
        "family": k,
        "tests": dict(CHANCE_TESTS),
        "p_values": p_values,
        "adjusted": adj,
        "differs": differs,
        "consistent": not differs,
        "statement": statement,
    }


def _p_value(value: float, level: float, samples: np.ndarray, proportion: Proportion | None) -> float:
    samples = np.asarray(samples, dtype=np.float64)
    if proportion is None:
        se = float(np.std(samples, ddof=1)) if samples.size > 1 else 0.0
        return normal_p_value(value, se, level)
    scale = proportion.scale
    p = min(max(value / scale, 0.0), 1.0)
    var = float(np.var(samples / scale, ddof=1)) if samples.size > 1 else 0.0
    n_eff = effective_size(p, var, proportion.n)
    return binomial_p_value(p * n_eff, n_eff, min(max(level / scale, 0.0), 1.0))
