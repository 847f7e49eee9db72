"""Agreement of automatic metrics with people (layer 2): Pearson, Spearman and Kendall (tau-b) x100
between a metric's per-item values and the mean human score, with percentile bootstrap intervals
over items (seeded). As in CREATE's journal version (its Table of human correlations).

>>> import numpy as np
>>> x = np.array([0.1, 0.4, 0.2, 0.9]); y = np.exp(x)
>>> {k: round(v, 6) for k, v in correlations(x, y).items()}["Spearman"]
100.0
"""

from __future__ import annotations

import numpy as np

from create_bench.errors import MetricInputError

MEASURES = ("Pearson", "Spearman", "Kendall")
#: CREATE journal version (TPAMI 2024), correlation with human judgments x100 (Pearson/Spearman/
#: Kendall), as reported there; not re-measured by create-bench.
PAPER_REPORTED = {
    "BLEU-4": (4.2, 5.3, 4.7),
    "ROUGE-L": (9.8, 9.9, 8.1),
    "CIDEr": (8.5, 8.8, 6.7),
    "BERTScore": (13.6, 13.3, 10.7),
    "ACTEr": (16.1, 15.0, 11.8),
}


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties at their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    xs = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else float("nan")


def _kendall_b(x: np.ndarray, y: np.ndarray) -> float:
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(len(x), 1)
    a, b = dx[iu], dy[iu]
    num = (a * b).sum()
    den = np.sqrt((a != 0).sum() * (b != 0).sum())
    return float(num / den) if den > 0 else float("nan")


def correlations(metric: np.ndarray, human: np.ndarray) -> dict[str, float]:
    """Pearson, Spearman and Kendall tau-b, x100 (NaN where a side is constant)."""
    x = np.asarray(metric, dtype=np.float64)
    y = np.asarray(human, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise MetricInputError(f"need two equal-length vectors of >= 3 items, got {x.shape} and {y.shape}")
    return {
        "Pearson": 100 * _pearson(x, y),
        "Spearman": 100 * _pearson(_ranks(x), _ranks(y)),
        "Kendall": 100 * _kendall_b(x, y),
    }


def correlation_intervals(
    metric: np.ndarray, human: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals (items resampled with replacement) of :func:`correlations`."""
    x = np.asarray(metric, dtype=np.float64)
    y = np.asarray(human, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {m: [] for m in MEASURES}
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        for k, v in correlations(x[idx], y[idx]).items():
            draws[k].append(v)
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {k: [float(np.nanpercentile(v, lo)), float(np.nanpercentile(v, hi))] for k, v in draws.items()}
