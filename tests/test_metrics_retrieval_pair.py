"""Both retrieval directions from one matrix: equal to the two one-direction paths on the same scores."""

from __future__ import annotations

import numpy as np
import pytest

import create_bench.metrics.retrieval_pair as pair
from create_bench.errors import MetricInputError
from create_bench.metrics.retrieval import RankStats, rank_statistics, ranks_from_similarity
from create_bench.metrics.retrieval_pair import paired_rank_statistics


def same(a: RankStats, b: RankStats) -> bool:
    return (
        np.array_equal(a.better, b.better)
        and np.array_equal(a.tied_relevant, b.tied_relevant)
        and np.array_equal(a.tied_other, b.tied_other)
        and a.ties == b.ties
        and a.gallery_size == b.gallery_size
    )


def draw(rng: np.random.Generator, ties: bool, dtype=np.float32):
    """Texts, videos and each text's video; small integer embeddings make exact (tied) scores."""
    n_v = int(rng.integers(1, 40))
    per = rng.integers(1, 6, n_v)
    text_video = rng.permutation(np.repeat(np.arange(n_v), per))
    d = int(rng.integers(1, 12))
    if ties:
        t = rng.integers(-2, 3, (len(text_video), d)).astype(dtype)
        v = rng.integers(-2, 3, (n_v, d)).astype(dtype)
    else:
        t = rng.standard_normal((len(text_video), d)).astype(dtype)
        v = rng.standard_normal((n_v, d)).astype(dtype)
    return t, v, text_video


def one_direction(t, v, text_video, ties="expected", dtype=np.float32, chunk=None):
    """The reference: T2V by rank_statistics, V2T on the transpose of the same matrix ``t @ v.T``,
    computed in the same row chunks (a row's float32 scores may depend on where BLAS puts it)."""
    lists = [np.flatnonzero(text_video == j) for j in range(len(v))]
    t, v = np.asarray(t, dtype=dtype), np.asarray(v, dtype=dtype)
    step = chunk or len(t)
    sim = np.concatenate([t[s : s + step] @ v.T for s in range(0, len(t), step)])
    return (
        rank_statistics(t, v, text_video, ties=ties, dtype=dtype, chunk_size=chunk),
        ranks_from_similarity(sim.T, lists, ties=ties, dtype=dtype),
        lists,
    )


@pytest.mark.parametrize("ties_in_data", [False, True])
@pytest.mark.parametrize("chunk_size", [None, 1, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_the_two_one_direction_paths(ties_in_data, chunk_size, dtype) -> None:
    rng = np.random.default_rng(0)
    for _ in range(60):
        t, v, tv = draw(rng, ties_in_data, dtype)
        a, b = paired_rank_statistics(t, v, tv, chunk_size=chunk_size, dtype=dtype)
        ref_a, ref_b, lists = one_direction(t, v, tv, dtype=dtype, chunk=chunk_size)
        assert same(a, ref_a) and same(b, ref_b)
        if ties_in_data:  # exact scores: the video-major matrix has the very same values
            assert same(b, rank_statistics(v, t, lists, dtype=dtype))


@pytest.mark.parametrize("ties", ["expected", "optimistic", "pessimistic"])
def test_tie_policies_and_heavy_ties(ties) -> None:
    rng = np.random.default_rng(1)
    t = rng.integers(0, 2, (120, 3)).astype(np.float32)  # 8 distinct rows: ties everywhere
    v = rng.integers(0, 2, (30, 3)).astype(np.float32)
    tv = np.arange(120) % 30
    a, b = paired_rank_statistics(t, v, tv, ties=ties)
    ref_a, ref_b, _ = one_direction(t, v, tv, ties=ties)
    assert same(a, ref_a) and same(b, ref_b)
    assert b.tied_other.sum() > 0 and (b.tied_relevant > 1).any()
    np.testing.assert_array_equal(b.ranks, ref_b.ranks)


def test_constant_scorer_is_chance_in_both_directions() -> None:
    t = np.ones((40, 4), dtype=np.float32) / 2
    v = np.ones((10, 4), dtype=np.float32) / 2
    tv = np.arange(40) % 10
    a, b = paired_rank_statistics(t, v, tv)
    assert a.summary()["R@1"] == pytest.approx(10.0)  # 1 of 10 videos
    assert b.summary()["MnR"] == pytest.approx((40 + 1) / (4 + 1))  # best of 4 among 40


def test_second_pass_gives_the_same_counts(monkeypatch) -> None:
    rng = np.random.default_rng(2)
    t, v = rng.standard_normal((200, 16)).astype(np.float32), rng.standard_normal((25, 16)).astype(np.float32)
    tv = np.arange(200) % 25
    t[::7] = t[3]  # some texts are the same text
    ref_a, ref_b, _ = one_direction(t, v, tv, chunk=7)
    calls = []
    second = pair._second_pass
    monkeypatch.setattr(pair, "_second_pass", lambda *a: calls.append(1) or second(*a))
    # too many band scores to keep: V2T counted in a second pass over the same chunks
    monkeypatch.setattr(pair, "BAND_LIMIT", 0)
    a, b = paired_rank_statistics(t, v, tv, chunk_size=7)
    assert same(a, ref_a) and same(b, ref_b) and calls == [1]
    monkeypatch.setattr(pair, "BAND_LIMIT", 8 * 2**20)
    # a band that misses the best own score (impossible with IEEE arithmetic) is detected
    monkeypatch.setattr(pair, "_bands", lambda q, g, tv, dt: (np.full(len(g), 5, dt), np.full(len(g), 6, dt)))
    a, b = paired_rank_statistics(t, v, tv, chunk_size=7)
    assert same(a, ref_a) and same(b, ref_b) and calls == [1, 1]
    monkeypatch.undo()
    a, b = paired_rank_statistics(t, v, tv, chunk_size=7)  # the one pass: the same counts
    assert same(a, ref_a) and same(b, ref_b)


def test_inputs_that_could_overflow_take_the_checked_paths() -> None:
    t = np.array([[3e20, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    v = np.array([[1.0, 0.0], [3e20, 1.0]], dtype=np.float32)
    with pytest.raises(MetricInputError, match="NaN or infinite similarity"):
        paired_rank_statistics(t, v, np.array([0, 0, 1]))
    for big in (1e19, 1e10):  # finite products: the checked two-matrix path, then the one pass
        t[0, 0], v[1, 0] = big, big
        a, b = paired_rank_statistics(t, v, np.array([0, 0, 1]))
        ref_a, _, lists = one_direction(t, v, np.array([0, 0, 1]))
        assert same(a, ref_a) and same(b, rank_statistics(v, t, lists))


def test_bad_inputs_name_what_is_wrong() -> None:
    t, v = np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32)
    with pytest.raises(MetricInputError, match=r"query 2 \('v2'\) has no relevant gallery item"):
        paired_rank_statistics(t, v, np.array([0, 1, 1]), video_ids=["v0", "v1", "v2"])
    with pytest.raises(MetricInputError, match="outside the gallery"):
        paired_rank_statistics(t, v, np.array([0, 1, 3]))
    with pytest.raises(MetricInputError, match="dimension"):
        paired_rank_statistics(t, v[:, :2], np.array([0, 1, 2]))
    bad = t.copy()
    bad[1, 0] = np.nan
    with pytest.raises(MetricInputError, match=r"query 1 \('b'\) has NaN"):
        paired_rank_statistics(bad, v, np.array([0, 1, 2]), text_ids=["a", "b", "c"])
    with pytest.raises(MetricInputError, match="gallery item 0 has NaN"):
        paired_rank_statistics(t, bad[[1, 0, 2]], np.array([0, 1, 2]))
