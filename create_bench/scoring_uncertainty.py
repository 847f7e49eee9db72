"""Uncertainty of scored groups (layer 4): seeded bootstrap intervals over videos, the retrieval
groups' chance levels and the family-wise chance check, plus the results' ``bootstrap`` block.

Split out of :mod:`create_bench.scoring`, which re-exports :class:`Uncertainty` and :func:`uncertainty`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from create_bench.metrics.bootstrap import bootstrap_cis, bootstrap_samples
from create_bench.metrics.chance import chance_check

if TYPE_CHECKING:
    from create_bench.scoring_groups import _Group


CI_LEVEL = 0.95


#: Family-wise error rate of the check that the retrieval numbers are consistent with chance.
CHANCE_ALPHA = 0.05


#: How the intervals are computed (recorded in the results' ``bootstrap`` block).
INTERVALS = {
    "R@K": "clopper-pearson at the effective sample size (bootstrap design effect)",
    "default": "percentile",
}


def _bootstrap_info(n: int, seed: int) -> dict[str, Any]:
    return {"n": n, "seed": seed, "level": CI_LEVEL, "unit": "video", "interval": dict(INTERVALS)}


@dataclass(frozen=True)
class Uncertainty:
    """Intervals, chance levels and the chance check of a set of scored groups.

    Attributes:
        ci: group -> metric -> 95% interval (empty without bootstrap).
        chance: retrieval group -> metric -> chance level.
        chance_test: :func:`create_bench.metrics.chance.chance_check` (None without bootstrap or
            without retrieval groups).
        samples: group -> metric -> the bootstrap resamples the two come from.
    """

    ci: dict[str, dict[str, list[float]]]
    chance: dict[str, dict[str, float]]
    chance_test: dict[str, Any] | None
    samples: dict[str, dict[str, np.ndarray]]


def uncertainty(groups: dict[str, _Group], n_videos: int, *, bootstrap: int, seed: int) -> Uncertainty:
    """Bootstrap intervals over the ``n_videos`` videos and the chance check, for scored groups."""
    chance = {g: dict(v.chance) for g, v in groups.items() if v.chance is not None}
    if not bootstrap:
        return Uncertainty({}, chance, None, {})
    stats = {g: v.weighted for g, v in groups.items()}
    proportions = {g: v.proportions for g, v in groups.items()}
    samples = bootstrap_samples(stats, n_videos, n_boot=bootstrap, seed=seed)
    ci = bootstrap_cis(stats, n_videos, level=CI_LEVEL, proportions=proportions, samples=samples)
    check = None
    if chance:
        scores = {g: groups[g].scores for g in chance}
        check = chance_check(scores, chance, samples, proportions, alpha=CHANCE_ALPHA)
    return Uncertainty(ci, chance, check, samples)
