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
order statistics, as ``numpy.median`` takes it. (A dual encoder gives identical texts identical
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

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from create_bench.errors import MetricInputError
from create_bench.metrics.bootstrap import Proportion
from create_bench.metrics.intervals import binomial_p_value, effective_size, holm, normal_p_value

DEFAULT_KS = (1, 5, 10)
#: Order-statistic probabilities closer than this to 0 or 1 are taken as 0 or 1 when summing (above
#: the DFT's rounding noise, about n x 1e-16; the neglected mass changes MdR by < gallery x 1e-9).
_EDGE = 1e-9


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
    groups = [(int(m), int((counts == m).sum())) for m in np.unique(counts)]
    cdfs = [(1.0 - best_rank_sf(gallery, m), c) for m, c in groups]
    return _expected_median(cdfs, n, gallery)


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
    out["MdR"] = chance_median_rank(gallery, counts)
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


def _count_cdf(cdfs: list[tuple[np.ndarray, int]], n: int, xs: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """``P(S(x) <= k - 1)`` for each ``x`` in ``xs`` (rows) and ``k`` in ``ks`` (columns), where
    ``S(x)`` is the number of the ``n`` queries ranked within ``x``.

    ``S(x)`` is a sum of independent binomials ``Bin(n_j, F_j(x))``; its distribution on ``0..n`` is
    the inverse DFT of the product of their characteristic functions (closed form), exact to rounding.
    """
    size = 1 << n.bit_length()  # >= n + 1 (S takes n + 1 values): a fast power-of-two DFT
    phase = np.exp(-2j * np.pi * np.arange(size) / size)[None, :]
    out = np.empty((len(xs), len(ks)), dtype=np.float64)
    for start in range(0, len(xs), 16):  # 16 DFTs at once bound memory (16 x size complex)
        x = np.asarray(xs[start : start + 16], dtype=np.int64)
        phi = np.ones((len(x), size), dtype=np.complex128)
        for cdf, count in cdfs:
            p = cdf[x][:, None]
            phi *= (1.0 - p + p * phase) ** count
        cum = np.cumsum(np.fft.ifft(phi, axis=1).real, axis=1)
        out[start : start + len(x)] = cum[:, [k - 1 for k in ks]]
    return np.clip(out, 0.0, 1.0)


def _expected_median(cdfs: list[tuple[np.ndarray, int]], n: int, gallery: int) -> float:
    """``numpy.median``'s expectation: the mean of ``E[X_(k)]`` over the middle order statistics
    ``k`` (one for odd ``n``, two for even), with ``E[X_(k)] = sum_{x >= 0} P(S(x) <= k - 1)``.

    The sum is exact where the probability is not within :data:`_EDGE` of 0 or 1; that window is
    found by bisection (the probability falls monotonically in ``x``; ``g(0) = 1`` since no query
    ranks within 0, ``g(gallery) = 0``).
    """
    ks = sorted({(n + 1) // 2, n // 2 + 1})

    def g(x: int, col: int) -> float:
        return float(_count_cdf(cdfs, n, np.array([x]), [ks[col]])[0, 0])

    a, b = 0, gallery  # last x with g ~ 1 for the smaller k (the larger k falls later)
    while b - a > 1:
        mid = (a + b) // 2
        a, b = (mid, b) if g(mid, 0) >= 1.0 - _EDGE else (a, mid)
    lo = a
    a, b = lo, gallery  # first x with g ~ 0 for the larger k
    while b - a > 1:
        mid = (a + b) // 2
        a, b = (a, mid) if g(mid, -1) <= _EDGE else (mid, b)
    hi = b
    window = _count_cdf(cdfs, n, np.arange(lo + 1, hi), ks)
    return float(lo + 1 + window.sum(axis=0).mean())


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
