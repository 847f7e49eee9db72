"""Retrieval ranks: a naive full-matrix numpy reference, hand-worked and brute-forced ties, chance."""

from __future__ import annotations

import doctest
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

import create_bench.metrics.retrieval as retrieval
from create_bench.errors import MetricInputError
from create_bench.metrics.retrieval import RankStats, rank_statistics, ranks_from_similarity, retrieval_scores


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def naive_ranks(q: np.ndarray, g: np.ndarray, targets) -> np.ndarray:
    """Ten-line reference: the full float64 matrix, best relevant item, 1 + items strictly above."""
    sim = q.astype(np.float64) @ g.astype(np.float64).T
    out = []
    for i, row in enumerate(sim):
        rel = np.atleast_1d(targets[i])
        best = row[rel].max()
        others = np.delete(row, rel)
        out.append(1 + int((others > best).sum()))
    return np.array(out, dtype=np.float64)


def naive_summary(ranks: np.ndarray) -> dict[str, float]:
    return {
        "R@1": 100 * float(np.mean(ranks <= 1)),
        "R@5": 100 * float(np.mean(ranks <= 5)),
        "R@10": 100 * float(np.mean(ranks <= 10)),
        "MdR": float(np.median(ranks)),
        "MnR": float(np.mean(ranks)),
    }


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 64, 10_000])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_single_target_equals_naive(chunk_size, dtype) -> None:
    rng = np.random.default_rng(0)
    q, g = unit(rng, 300, 32), unit(rng, 120, 32)
    targets = rng.integers(0, 120, 300)
    stats = rank_statistics(q, g, targets, chunk_size=chunk_size, dtype=dtype)
    ref = naive_ranks(q, g, targets)
    np.testing.assert_array_equal(stats.ranks, ref)
    assert (stats.tied_other == 0).all()  # no ties in this data, so every policy agrees
    assert retrieval_scores(q, g, targets, chunk_size=chunk_size) == pytest.approx(
        naive_summary(ref), abs=1e-12
    )


@pytest.mark.parametrize("chunk_size", [None, 1, 5, 33])
def test_multi_target_equals_naive(chunk_size) -> None:
    rng = np.random.default_rng(1)
    v, t = unit(rng, 40, 16), unit(rng, 200, 16)
    lists = [list(rng.choice(200, size=rng.integers(1, 8), replace=False)) for _ in range(40)]
    stats = rank_statistics(v, t, lists, chunk_size=chunk_size)
    np.testing.assert_array_equal(stats.ranks, naive_ranks(v, t, lists))


def test_similarity_path_equals_embedding_path_and_transpose() -> None:
    rng = np.random.default_rng(2)
    q, g = unit(rng, 90, 8), unit(rng, 30, 8)
    targets = np.arange(90) % 30
    sim = (q.astype(np.float64) @ g.astype(np.float64).T).astype(np.float32)
    a = ranks_from_similarity(sim, targets, chunk_size=4)
    np.testing.assert_array_equal(a.ranks, naive_ranks(q, g, targets))
    # V2T on the transpose (a non-contiguous view) against the naive multi-target reference
    lists = [list(np.flatnonzero(targets == j)) for j in range(30)]
    b = ranks_from_similarity(sim.T, lists, chunk_size=7)
    np.testing.assert_array_equal(b.ranks, naive_ranks(g, q, lists))


def test_float32_and_float64_paths_agree() -> None:
    rng = np.random.default_rng(3)
    q, g = unit(rng, 500, 64), unit(rng, 400, 64)
    targets = rng.integers(0, 400, 500)
    np.testing.assert_array_equal(
        rank_statistics(q, g, targets).ranks, rank_statistics(q, g, targets, dtype="float64").ranks
    )


def test_torch_inputs() -> None:
    import torch

    rng = np.random.default_rng(4)
    q, g = unit(rng, 50, 8), unit(rng, 20, 8)
    targets = rng.integers(0, 20, 50)
    assert retrieval_scores(torch.from_numpy(q), torch.from_numpy(g), torch.from_numpy(targets)) == (
        retrieval_scores(q, g, targets)
    )


# ---- ties: hand-worked cases and brute force over every tie-breaking order


def brute_force(
    row: list[float], relevant: set[int], ks=(1, 2, 3, 4, 5)
) -> tuple[Fraction, dict[int, Fraction]]:
    """Expected best-relevant rank and P(rank <= k) over all orders of the tied items."""
    order_keys = sorted(set(row), reverse=True)
    groups = [[i for i, s in enumerate(row) if s == key] for key in order_keys]
    perms = [list(itertools.permutations(gr)) for gr in groups]
    total, hits, count = Fraction(0), dict.fromkeys(ks, 0), 0
    for combo in itertools.product(*perms):
        ranking = [i for gr in combo for i in gr]
        rank = 1 + min(ranking.index(r) for r in relevant)
        total += rank
        count += 1
        for k in ks:
            hits[k] += rank <= k
    return total / count, {k: Fraction(hits[k], count) for k in ks}


@pytest.mark.parametrize(
    "row, relevant",
    [
        ([0.5, 0.5, 0.5, 0.9, 0.1], {0}),  # g=1, one relevant tied with 2 others
        ([0.7, 0.7, 0.7, 0.7, 0.9], {0, 1}),  # two relevant tied with two non-relevant
        ([0.3, 0.3, 0.3, 0.3, 0.3, 0.3], {2}),  # everything tied
        ([0.2, 0.8, 0.8, 0.8, 0.2, 0.2], {0, 4, 5}),  # all relevant tied with a non-relevant below 3
        ([0.6, 0.6, 0.9, 0.9, 0.6], {0, 1, 4}),  # every tied item relevant: no randomness
        ([0.6, 0.4, 0.6, 0.6, 0.6, 0.6], {1, 3}),  # the best relevant (3) ties with 4 others
    ],
)
def test_ties_against_brute_force(row, relevant) -> None:
    exp_rank, probs = brute_force(row, relevant)
    stats = ranks_from_similarity(np.array([row], dtype=np.float32), [sorted(relevant)])
    assert stats.ranks[0] == pytest.approx(float(exp_rank), abs=1e-12)
    for k, p in probs.items():
        assert stats.recall_at(k)[0] == pytest.approx(float(p), abs=1e-12), k


def test_hand_worked_single_relevant_tie() -> None:
    # target 0 scores 0.5; one item above (0.9); two others tied at 0.5: g=1, t=2
    stats = ranks_from_similarity(np.array([[0.5, 0.5, 0.5, 0.9, 0.1]]), np.array([0]))
    assert (stats.better[0], stats.tied_relevant[0], stats.tied_other[0]) == (1, 1, 2)
    assert stats.ranks[0] == 3.0  # g + 1 + t/2
    assert [stats.recall_at(k)[0] for k in (1, 2, 3, 4)] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert stats.with_ties("optimistic").ranks[0] == 2.0
    assert stats.with_ties("pessimistic").ranks[0] == 4.0
    assert [stats.with_ties("optimistic").recall_at(k)[0] for k in (1, 2)] == [0.0, 1.0]
    assert [stats.with_ties("pessimistic").recall_at(k)[0] for k in (3, 4)] == [0.0, 1.0]


def test_large_ties_use_exact_binomials() -> None:
    # 3 relevant and 5000 non-relevant tied, 7 items above; K up to 200 exercises the log-gamma path
    t_n, r, g = 5000, 3, 7
    stats = RankStats(np.array([g]), np.array([r]), np.array([t_n]))
    for k in (1, 8, 9, 10, 70, 71, 100, 200):
        m = k - g
        exact = 0 if m <= 0 else 1 - Fraction(math.comb(t_n, m), math.comb(t_n + r, m))
        assert stats.recall_at(k)[0] == pytest.approx(float(exact), rel=1e-9, abs=1e-15), k
    assert stats.ranks[0] == pytest.approx(g + (r + t_n + 1) / (r + 1))


@pytest.mark.parametrize("n_rel", [1, 3])
def test_constant_scorer_is_at_chance(n_rel) -> None:
    n_q, n_g = 40, 25
    const = np.full((n_q, n_g), 0.25, dtype=np.float32)
    targets = [[(i + j) % n_g for j in range(n_rel)] for i in range(n_q)]
    s = ranks_from_similarity(const, targets).summary()
    for k in (1, 5, 10):
        chance = 1 - Fraction(math.comb(n_g - n_rel, k), math.comb(n_g, k))
        assert s[f"R@{k}"] == pytest.approx(100 * float(chance), abs=1e-9)
    assert s["MnR"] == pytest.approx((n_g + 1) / (n_rel + 1)) and s["MdR"] == s["MnR"]
    assert (
        ranks_from_similarity(const, targets, ties="optimistic").summary()["R@1"] == 100.0
    )  # why not optimistic


def test_identical_embeddings_are_chance_not_perfect() -> None:
    e = np.tile(np.array([[0.6, 0.8]], dtype=np.float32), (12, 1))
    assert retrieval_scores(e, e, np.arange(12))["R@1"] == pytest.approx(100 / 12)


# ---- input errors


def test_nan_and_inf_name_the_query() -> None:
    sim = np.zeros((4, 3), dtype=np.float32)
    sim[2, 1] = np.nan
    with pytest.raises(MetricInputError, match=r"query 2 \('c'\) has NaN"):
        ranks_from_similarity(sim, np.zeros(4, dtype=int), query_ids=["a", "b", "c", "d"], chunk_size=3)
    sim[2, 1], sim[3, 0] = 0, np.inf
    with pytest.raises(MetricInputError, match="query 3 has NaN or infinite"):
        ranks_from_similarity(sim, np.zeros(4, dtype=int))
    q = np.ones((3, 2), dtype=np.float32)
    q[1, 0] = np.nan
    with pytest.raises(MetricInputError, match="query 1 has NaN"):
        rank_statistics(q, np.ones((2, 2), dtype=np.float32), np.zeros(3, dtype=int))
    with pytest.raises(MetricInputError, match="gallery item 1"):
        rank_statistics(np.ones((3, 2)), np.array([[1.0, 0.0], [np.inf, 0.0]]), np.zeros(3, dtype=int))


def test_overflowing_products_are_caught() -> None:
    q = np.array([[1.0, 0.0], [3e20, 3e20]], dtype=np.float32)  # finite inputs, 9e40 overflows float32
    with pytest.raises(MetricInputError, match=r"query 1 \('b'\) has NaN or infinite similarity"):
        rank_statistics(q, np.full((2, 2), 3e20, np.float32), np.array([0, 1]), query_ids=["a", "b"])


def test_huge_finite_scores_are_not_nan() -> None:
    sim = np.full((1, 4), 3e38, dtype=np.float32)  # the row sum overflows, the entries are finite
    assert ranks_from_similarity(sim, np.array([0])).ranks[0] == 2.5


@pytest.mark.parametrize(
    "targets, match",
    [
        (np.array([0, 5]), "outside the gallery"),
        (np.array([0, -1]), "outside the gallery"),
        (np.array([0]), "1 entries for 2 queries"),
        ([[0], []], "query 1 has no relevant"),
        ([[0, 0], [1]], "listed twice"),
        (np.array([0.0, 1.0]), "integer"),
    ],
)
def test_bad_targets(targets, match) -> None:
    with pytest.raises(MetricInputError, match=match):
        ranks_from_similarity(np.zeros((2, 3)), targets)


def test_bad_shapes_and_options() -> None:
    with pytest.raises(MetricInputError, match="dimension"):
        rank_statistics(np.ones((2, 3)), np.ones((2, 4)), np.zeros(2, dtype=int))
    with pytest.raises(MetricInputError, match="ties must be"):
        ranks_from_similarity(np.zeros((2, 3)), np.zeros(2, dtype=int), ties="random")
    with pytest.raises(MetricInputError, match="dtype"):
        ranks_from_similarity(np.zeros((2, 3)), np.zeros(2, dtype=int), dtype="float16")
    with pytest.raises(MetricInputError, match="2-D"):
        ranks_from_similarity(np.zeros(3), np.zeros(3, dtype=int))


def test_weighted_summary_equals_repeated_queries() -> None:
    rng = np.random.default_rng(5)
    sim = rng.integers(0, 4, size=(30, 12)).astype(np.float32)  # many ties on purpose
    targets = rng.integers(0, 12, 30)
    stats = ranks_from_similarity(sim, targets)
    w = rng.integers(0, 3, size=(4, 30))
    w[:, 0] += 1
    got = stats.weighted_summary(w)
    for b in range(4):
        idx = np.repeat(np.arange(30), w[b])
        ref = ranks_from_similarity(sim[idx], targets[idx]).summary()
        for key, value in ref.items():
            assert got[key][b] == pytest.approx(value, abs=1e-9), key
    # grouped: units of 3 queries each
    groups = np.arange(30) // 3
    wu = rng.integers(1, 3, size=(2, 10))
    grouped = stats.weighted_summary(wu, groups=groups)
    flat = stats.weighted_summary(wu[:, groups])
    for key in grouped:
        np.testing.assert_allclose(grouped[key], flat[key], atol=1e-9)


def test_doctests() -> None:
    result = doctest.testmod(retrieval)
    assert result.attempted > 0 and result.failed == 0
