"""Seeded bootstrap confidence intervals and the paired bootstrap test (layer 2).

Resampling is over *units* (videos): a resample is a vector of integer weights, how often each
unit was drawn, so a statistic is recomputed from per-unit sufficient statistics without
re-scoring anything. A statistic is a function ``stat(weights) -> {metric: values}`` taking
``weights`` of shape ``[B, n]`` and returning arrays of shape ``[B]``; calling it with a row of
ones gives the observed value.

Intervals. By default the percentile interval (the 2.5th and 97.5th percentiles for 95%), as in
sacrebleu and Koehn (2004). A metric declared a *proportion* (a mean over ``n`` queries of
per-query values in [0, 1], such as R@K) gets the Clopper-Pearson interval at the effective
sample size instead (Korn and Graubard 1998): ``n_eff = p(1 - p) / var``, ``var`` being the
bootstrap variance over units (so queries of one video count as the cluster they are), capped at
``n`` and equal to ``n`` when ``p`` is 0 or 1. The percentile interval of a proportion of a few
successes is far too narrow (with no success it is ``[0, 0]``); measured on the ``random``
baseline (``benchmarks/chance_calibration.py``) it covered the chance level of V2T R@1 on
CREATE-sample about 65% of the time instead of 95%.

The paired test draws the same resamples for both systems and reports a two-sided p-value under
the null hypothesis of no difference: the bootstrap distribution of the difference is shifted to
mean zero and ``p = (1 + #{|d_b - mean(d)| >= |d_obs|}) / (B + 1)``.

>>> import numpy as np
>>> scores = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
>>> ci = bootstrap_ci(lambda w: {"acc": w @ scores / w.sum(axis=1)}, n=5, n_boot=200, seed=0)
>>> ci["acc"][0] <= 0.6 <= ci["acc"][1]
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from create_bench.errors import MetricInputError
from create_bench.metrics.intervals import clopper_pearson, effective_size

StatFn = Callable[[np.ndarray], dict[str, np.ndarray]]

#: Rows of resample weights handed to a statistic at once (bounds memory for large n).
BLOCK = 256


def resample_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, n]`` int32 counts: row b says how often each of the n units is in resample b.

    Deterministic for a given ``(n, n_boot, seed)`` (numpy's PCG64 via ``default_rng``).

    >>> w = resample_weights(4, 3, seed=0)
    >>> w.shape, w.sum(axis=1).tolist()
    ((3, 4), [4, 4, 4])
    """
    if n < 1:
        raise MetricInputError("bootstrap needs at least one unit")
    if n_boot < 1:
        raise MetricInputError(f"bootstrap needs n_boot >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n), dtype=np.int64)
    draws += np.arange(n_boot, dtype=np.int64)[:, None] * n
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.int32)


def _samples(stat: StatFn, weights: np.ndarray) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {}
    for start in range(0, weights.shape[0], BLOCK):
        for k, v in stat(weights[start : start + BLOCK].astype(np.float64)).items():
            out.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
    return {k: np.concatenate(v) for k, v in out.items()}


def observed(stat: StatFn, n: int) -> dict[str, float]:
    """The statistic on the full sample (every unit once)."""
    return {k: float(v[0]) for k, v in stat(np.ones((1, n), dtype=np.float64)).items()}


@dataclass(frozen=True)
class Proportion:
    """Declares a metric a proportion: ``scale`` x the mean over ``n`` queries of per-query values
    in [0, 1] (R@K: ``scale = 100``). Its interval is Clopper-Pearson at the effective size."""

    n: int
    scale: float = 100.0


def bootstrap_samples(
    stats: Mapping[str, StatFn], n: int, *, n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """The ``n_boot`` resampled values of every metric of every statistic (same resamples for all)."""
    weights = resample_weights(n, n_boot, seed)
    return {name: _samples(stat, weights) for name, stat in stats.items()}


def proportion_interval(
    value: float, samples: np.ndarray, proportion: Proportion, level: float = 0.95
) -> list[float]:
    """Clopper-Pearson interval of a proportion metric at its effective size (see the module
    docstring), on the metric's scale."""
    p, var = (
        value / proportion.scale,
        float(np.var(samples / proportion.scale, ddof=1)) if len(samples) > 1 else 0.0,
    )
    n_eff = effective_size(p, var, proportion.n)
    lo, hi = clopper_pearson(min(max(p, 0.0), 1.0) * n_eff, n_eff, level)
    return [proportion.scale * lo, proportion.scale * hi]


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> list[float]:
    """The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the bootstrap samples."""
    tail = 100.0 * (1.0 - level) / 2.0
    return [float(x) for x in np.percentile(samples, [tail, 100.0 - tail])]


def bootstrap_ci(
    stat: StatFn,
    n: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    proportions: Mapping[str, Proportion] | None = None,
) -> dict[str, list[float]]:
    """Bootstrap interval ``[lo, hi]`` of every metric ``stat`` returns: percentile, or
    Clopper-Pearson at the effective size for the metrics named in ``proportions``."""
    props = {"": proportions} if proportions else None
    return bootstrap_cis({"": stat}, n, n_boot=n_boot, seed=seed, level=level, proportions=props)[""]


def bootstrap_cis(
    stats: Mapping[str, StatFn],
    n: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    proportions: Mapping[str, Mapping[str, Proportion]] | None = None,
    samples: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """:func:`bootstrap_ci` for several statistics over the same units and the same resamples.

    ``proportions`` maps a statistic's name to its proportion metrics; ``samples`` passes resamples
    already drawn by :func:`bootstrap_samples` (with the same ``n_boot`` and ``seed``).
    """
    if not 0.0 < level < 1.0:
        raise MetricInputError(f"confidence level must be in (0, 1), got {level}")
    if samples is None:
        samples = bootstrap_samples(stats, n, n_boot=n_boot, seed=seed)
    out: dict[str, dict[str, list[float]]] = {}
    for name, stat in stats.items():
        props = (proportions or {}).get(name) or {}
        obs = observed(stat, n) if props else {}
        out[name] = {
            k: proportion_interval(obs[k], v, props[k], level)
            if k in props
            else percentile_interval(v, level)
            for k, v in samples[name].items()
        }
    return out


def paired_bootstrap_test(
    stat_a: StatFn,
    stat_b: StatFn,
    n: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Compare two systems scored on the same ``n`` units with the same resamples.

    Returns, per metric: ``a`` and ``b`` (observed), ``delta`` (a - b), ``ci`` (percentile
    interval of the delta) and ``p_value`` (two-sided, see the module docstring).

    >>> import numpy as np
    >>> a, b = np.ones(50), np.zeros(50)
    >>> res = paired_bootstrap_test(lambda w: {"m": w @ a / w.sum(1)}, lambda w: {"m": w @ b / w.sum(1)}, 50)
    >>> res["m"]["delta"], res["m"]["p_value"] < 0.01
    (1.0, True)
    """
    weights = resample_weights(n, n_boot, seed)
    obs_a, obs_b = observed(stat_a, n), observed(stat_b, n)
    if obs_a.keys() != obs_b.keys():
        raise MetricInputError(
            f"the two systems report different metrics: {sorted(obs_a)} vs {sorted(obs_b)}"
        )
    sa, sb = _samples(stat_a, weights), _samples(stat_b, weights)
    tail = 100.0 * (1.0 - level) / 2.0
    out: dict[str, dict[str, Any]] = {}
    for k in obs_a:
        delta = obs_a[k] - obs_b[k]
        d = sa[k] - sb[k]
        extreme = np.abs(d - d.mean()) >= abs(delta) - 1e-12 * max(1.0, abs(delta))
        out[k] = {
            "a": obs_a[k],
            "b": obs_b[k],
            "delta": delta,
            "ci": [float(x) for x in np.percentile(d, [tail, 100.0 - tail])],
            "p_value": float((1 + int(extreme.sum())) / (n_boot + 1)),
        }
    return out


def weighted_median(values: np.ndarray, weights: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """``numpy.median`` of ``values`` repeated ``weights[b]`` times, for each row ``b``.

    Integer weights make this exactly the median of the resampled values (the mean of the two
    middle ones for an even count). With ``groups``, ``weights`` are per unit ``[B, U]`` and value
    ``i`` takes the weight of unit ``groups[i]``.

    >>> import numpy as np
    >>> weighted_median(np.array([3.0, 1.0, 2.0]), np.array([[1, 1, 1], [0, 2, 1], [2, 0, 2]])).tolist()
    [2.0, 1.0, 2.5]
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(values, kind="stable")
    v = values[order]
    cols = order if groups is None else np.asarray(groups, dtype=np.int64)[order]
    if _blockable(weights, len(cols)):
        lo, hi = _middle_positions_blocked(weights, cols)
        return (v[lo] + v[hi]) / 2.0
    out = np.empty(weights.shape[0], dtype=np.float64)
    for start in range(0, weights.shape[0], 64):
        lo, hi = _middle_positions(weights[start : start + 64], cols)
        out[start : start + len(lo)] = (v[lo] + v[hi]) / 2.0
    return out


def _blockable(weights: np.ndarray, n_values: int, size: int = 256) -> bool:
    """Whether :func:`_middle_positions_blocked` applies: non-negative integer weights whose row
    sums are exact in float64, and a small unit x block table."""
    if weights.shape[1] * -(-n_values // size) > 1 << 23 or not (weights >= 0).all():
        return False
    return (
        bool(np.all(weights == np.floor(weights))) and float(weights.sum(axis=1).max(initial=0.0)) < 2.0**53
    )


def _middle_positions(weights: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in the sorted order ``cols``) of the two middle values of each weight row."""
    cum = np.cumsum(weights[:, cols], axis=1)
    total = cum[:, -1]
    if (total <= 0).any():
        raise MetricInputError("a bootstrap resample has no weight")
    # 0-based positions (total-1)//2 and total//2 in the expanded sorted array
    lo_pos = np.floor((total - 1) / 2)
    hi_pos = np.floor(total / 2)
    lo = np.array([np.searchsorted(c, p, side="right") for c, p in zip(cum, lo_pos)])
    hi = np.array([np.searchsorted(c, p, side="right") for c, p in zip(cum, hi_pos)])
    return lo, hi


def _middle_positions_blocked(
    weights: np.ndarray, cols: np.ndarray, size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_middle_positions` for non-negative integer weights, without a ``[B, values]`` cumsum.

    The sorted values are cut into blocks of ``size``; one matmul gives every row's weight per
    block (integer sums below 2**53: exact in any order), a cumsum over blocks finds the block
    that holds each middle position, and only that block's weights are gathered and summed. The
    positions are the same as :func:`_middle_positions` finds: the first whose running weight
    exceeds ``(total - 1) // 2`` and ``total // 2``.
    """
    n_rows, n_units = weights.shape
    n_blocks = max(1, -(-len(cols) // size))
    block_of = np.arange(len(cols)) // size
    members = np.bincount(cols * n_blocks + block_of, minlength=n_units * n_blocks).reshape(n_units, n_blocks)
    cum = np.cumsum(weights @ members.astype(np.float64), axis=1)  # [B, blocks]
    total = cum[:, -1]
    if (total <= 0).any():
        raise MetricInputError("a bootstrap resample has no weight")
    flat = np.full(n_blocks * size, n_units, dtype=np.int64)  # column n_units: weight 0
    flat[: len(cols)] = cols
    padded = flat.reshape(n_blocks, size)
    wz = np.concatenate([weights, np.zeros((n_rows, 1))], axis=1)
    out = []
    for pos in (np.floor((total - 1) / 2), np.floor(total / 2)):
        block = (cum <= pos[:, None]).sum(axis=1)  # the first block whose running weight exceeds pos
        before = np.where(block > 0, cum[np.arange(n_rows), np.maximum(block - 1, 0)], 0.0)
        inside = np.cumsum(np.take_along_axis(wz, padded[block], axis=1), axis=1) + before[:, None]
        out.append(block * size + (inside <= pos[:, None]).sum(axis=1))
    return out[0], out[1]
