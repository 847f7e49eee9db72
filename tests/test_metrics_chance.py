"""Chance levels against enumeration of every ordering and against simulated random rankings; the
family-wise chance check on hand-made inputs."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from create_bench.errors import MetricInputError
from create_bench.metrics.bootstrap import Proportion
from create_bench.metrics.chance import (
    best_rank_sf,
    chance_check,
    chance_median_rank,
    chance_recall,
    chance_scores,
    retrieval_chance,
)
from create_bench.metrics.retrieval import ranks_from_similarity


def _enumerated_best_rank(gallery: int, relevant: int) -> dict[int, Fraction]:
    """Exact distribution of the best relevant rank over all gallery! orderings."""
    counts: dict[int, int] = {}
    perms = list(itertools.permutations(range(gallery)))
    for perm in perms:  # items 0 .. relevant-1 are the relevant ones; perm[i] is item at rank i+1
        best = min(perm.index(i) for i in range(relevant)) + 1
        counts[best] = counts.get(best, 0) + 1
    return {r: Fraction(c, len(perms)) for r, c in counts.items()}


@pytest.mark.parametrize("gallery,relevant", [(1, 1), (5, 1), (6, 2), (6, 3), (7, 7), (7, 4)])
def test_best_rank_distribution_matches_enumeration(gallery: int, relevant: int) -> None:
    dist = _enumerated_best_rank(gallery, relevant)
    sf = best_rank_sf(gallery, relevant)
    for j in range(gallery + 1):
        want = sum((p for r, p in dist.items() if r > j), Fraction(0))
        assert sf[j] == pytest.approx(float(want), abs=1e-15)
    for k in range(1, gallery + 2):
        want = sum((p for r, p in dist.items() if r <= k), Fraction(0))
        assert chance_recall(gallery, relevant, k) == pytest.approx(float(want), abs=1e-15)
        if k <= gallery:  # the closed form of the brief: 1 - C(M - m, K) / C(M, K)
            closed = 1 - Fraction(math.comb(gallery - relevant, k), math.comb(gallery, k))
            assert chance_recall(gallery, relevant, k) == pytest.approx(float(closed), abs=1e-15)
    mean = sum((r * p for r, p in dist.items()), Fraction(0))
    assert mean == Fraction(gallery + 1, relevant + 1)
    assert chance_scores(gallery, [relevant])["MnR"] == pytest.approx(float(mean), abs=1e-12)


def _enumerated_median(gallery: int, counts: list[int]) -> float:
    """E[numpy.median of the best ranks] of independent queries, over every combination of ranks."""
    dists = [_enumerated_best_rank(gallery, m) for m in counts]
    total = Fraction(0)
    for combo in itertools.product(*(d.items() for d in dists)):
        prob = math.prod((p for _, p in combo), start=Fraction(1))
        total += prob * Fraction(float(np.median([r for r, _ in combo]))).limit_denominator(4)
    return float(total)


@pytest.mark.parametrize(
    "gallery,counts", [(5, [1]), (5, [2, 1]), (6, [1, 2, 3]), (5, [1, 1, 2, 2]), (4, [3, 1, 1])]
)
def test_median_matches_enumeration(gallery: int, counts: list[int]) -> None:
    assert chance_median_rank(gallery, counts) == pytest.approx(_enumerated_median(gallery, counts), abs=1e-9)


def test_median_of_uniform_ranks_is_the_midpoint() -> None:
    # T2V on CREATE-sample (200 videos, 2000 texts) and on CREATE's test split size: symmetric ranks
    assert chance_median_rank(200, np.ones(2000, dtype=np.int64)) == pytest.approx(100.5, abs=1e-6)
    assert chance_median_rank(5000, np.ones(501, dtype=np.int64)) == pytest.approx(2500.5, abs=1e-6)


def test_chance_matches_simulated_random_rankings() -> None:
    """Independent uniformly random orderings of the gallery for every query, many times: the mean of
    each reported metric is within 4.5 standard errors of its chance level."""
    rng = np.random.default_rng(0)
    counts = np.array([1, 2, 3, 4, 2, 1, 3, 5, 2, 2, 1, 4])  # mixed reference counts, 30 texts
    gallery, n_sim = int(counts.sum()), 20_000
    # best rank = 1 + min over the m relevant positions of a random permutation; simulate by sorting keys
    keys = rng.random((n_sim, len(counts), gallery))
    rank_of = keys.argsort(axis=2).argsort(axis=2) + 1  # rank of item j (items < m are relevant)
    best = np.stack([rank_of[:, q, : counts[q]].min(axis=1) for q in range(len(counts))], axis=1)
    sim = {f"R@{k}": 100.0 * (best <= k).mean(axis=1) for k in (1, 5, 10)}
    sim["MdR"] = np.median(best, axis=1)
    sim["MnR"] = best.mean(axis=1)
    want = chance_scores(gallery, counts)
    for metric, values in sim.items():
        se = values.std(ddof=1) / math.sqrt(n_sim)
        assert abs(values.mean() - want[metric]) <= 4.5 * se, (metric, values.mean(), want[metric], se)


def test_retrieval_chance_closed_forms() -> None:
    c = retrieval_chance([10] * 200)  # CREATE-sample's test split
    assert c["t2v"]["R@1"] == pytest.approx(0.5) and c["t2v"]["R@10"] == pytest.approx(5.0)
    assert c["t2v"]["MnR"] == 100.5 and c["t2v"]["MdR"] == pytest.approx(100.5, abs=1e-6)
    for k in (1, 5, 10):
        closed = 100 * (1 - Fraction(math.comb(1990, k), math.comb(2000, k)))
        assert c["v2t"][f"R@{k}"] == pytest.approx(float(closed), rel=1e-12)
    assert c["v2t"]["MnR"] == pytest.approx(2001 / 11)
    # the median of the best of 10 among 2000 is far below the mean rank: about 2000 (1 - 0.5^(1/10))
    assert 130 < c["v2t"]["MdR"] < 140


def test_constant_scorer_gets_the_chance_recall_and_mean_rank() -> None:
    """Independent reference: the tie-aware ranks of a constant similarity (the retrieval module's
    expected-rank rule) average to the same R@K and MnR."""
    counts = [3, 1, 2, 2, 1]
    owners = np.repeat(np.arange(len(counts)), counts)
    sim = np.zeros((len(counts), len(owners)), dtype=np.float32)  # V2T: videos x texts, all tied
    targets = [np.flatnonzero(owners == v) for v in range(len(counts))]
    got = ranks_from_similarity(sim, targets).summary(ks=(1, 2, 5))
    want = chance_scores(len(owners), counts, ks=(1, 2, 5))
    for m in ("R@1", "R@2", "R@5", "MnR"):
        assert got[m] == pytest.approx(want[m], abs=1e-9)


@pytest.mark.parametrize(
    "call",
    [
        lambda: best_rank_sf(0, 1),
        lambda: best_rank_sf(3, 4),
        lambda: chance_recall(5, 1, 0),
        lambda: chance_scores(5, []),
        lambda: chance_scores(5, [1.5]),
        lambda: chance_scores(5, [6]),
        lambda: retrieval_chance([2, 0, 1]),
    ],
)
def test_bad_inputs(call) -> None:
    with pytest.raises(MetricInputError):
        call()


# ------------------------------------------------------------------------------------------------
# the family-wise check


def _family(scores: dict, chance: dict, n: int = 400, seed: int = 0) -> dict:
    """Bootstrap-like samples: a normal spread around each score (SE 1 for ranks, binomial for R@K)."""
    rng = np.random.default_rng(seed)
    samples, props = {}, {}
    for g, metrics in scores.items():
        samples[g], props[g] = {}, {}
        for m, v in metrics.items():
            if m.startswith("R@"):
                props[g][m] = Proportion(n)
                sd = 100 * math.sqrt(max(v / 100 * (1 - v / 100), 1e-9) / n)
            else:
                sd = 1.0
            samples[g][m] = v + sd * rng.standard_normal(2000)
    return chance_check(scores, chance, samples, props)


def test_check_at_chance_is_consistent() -> None:
    chance = {"t2v_caption": {"R@1": 10.0, "MnR": 50.0}, "v2t_caption": {"R@1": 20.0, "MdR": 30.0}}
    out = _family(chance, chance)
    assert out["consistent"] and out["differs"] == [] and out["family"] == 4
    assert all(p == pytest.approx(1.0, abs=0.02) for g in out["p_values"].values() for p in g.values())
    assert "All 4 retrieval numbers are consistent with chance" in out["statement"]


def test_check_flags_numbers_far_from_chance_with_direction_and_holm() -> None:
    chance = {"t2v_caption": {"R@1": 10.0, "MnR": 50.0, "MdR": 50.0}, "v2t_caption": {"R@1": 20.0}}
    scores = {"t2v_caption": {"R@1": 40.0, "MnR": 60.0, "MdR": 51.0}, "v2t_caption": {"R@1": 20.0}}
    out = _family(scores, chance)
    assert not out["consistent"]
    assert out["differs"] == [
        {"group": "t2v_caption", "metric": "R@1", "direction": "better"},
        {"group": "t2v_caption", "metric": "MnR", "direction": "worse"},  # a higher mean rank is worse
    ]
    # Holm by hand from the raw p-values
    flat = [(g, m, p) for g, ms in out["p_values"].items() for m, p in ms.items()]
    order = sorted(flat, key=lambda t: t[2])
    running = 0.0
    for i, (g, m, p) in enumerate(order):
        running = max(running, min(1.0, (len(flat) - i) * p))
        assert out["adjusted"][g][m] == pytest.approx(running)
    assert "2 of 4 retrieval numbers differ from chance" in out["statement"]


def test_check_rejects_empty_family_and_bad_alpha() -> None:
    with pytest.raises(MetricInputError):
        chance_check({}, {}, {}, {})
    with pytest.raises(MetricInputError):
        chance_check({"g": {"MnR": 1.0}}, {"g": {"MnR": 1.0}}, {"g": {"MnR": np.ones(3)}}, {}, alpha=1.5)
