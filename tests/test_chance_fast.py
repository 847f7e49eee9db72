"""The expected median rank's truncated Fourier sum (create_bench.metrics.chance) against the full-size
DFT it replaced (kept here as the reference, verbatim but for names) and against exact rational
arithmetic."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pytest

from create_bench.metrics import chance
from create_bench.metrics.chance import best_rank_sf, chance_median_rank, retrieval_chance

_EDGE = 1e-9


def _dft_count_cdf(
    cdfs: list[tuple[np.ndarray, int]], n: int, xs: np.ndarray, ks: Sequence[int]
) -> np.ndarray:
    """The former ``_count_cdf``: one inverse DFT of size ``2^ceil(log2(n + 1))`` per ``x``."""
    size = 1 << n.bit_length()
    phase = np.exp(-2j * np.pi * np.arange(size) / size)[None, :]
    out = np.empty((len(xs), len(ks)), dtype=np.float64)
    for start in range(0, len(xs), 16):
        x = np.asarray(xs[start : start + 16], dtype=np.int64)
        phi = np.ones((len(x), size), dtype=np.complex128)
        for cdf, count in cdfs:
            p = cdf[x][:, None]
            phi *= (1.0 - p + p * phase) ** count
        cum = np.cumsum(np.fft.ifft(phi, axis=1).real, axis=1)
        out[start : start + len(x)] = cum[:, [k - 1 for k in ks]]
    return np.clip(out, 0.0, 1.0)


def _dft_median_rank(gallery: int, counts: Sequence[int] | np.ndarray) -> float:
    """The former ``chance_median_rank``: the window of the sum found by bisection on DFTs."""
    counts = np.asarray(counts, dtype=np.int64)
    n = len(counts)
    cdfs = [(1.0 - best_rank_sf(gallery, int(m)), int((counts == m).sum())) for m in np.unique(counts)]
    ks = sorted({(n + 1) // 2, n // 2 + 1})

    def g(x: int, col: int) -> float:
        return float(_dft_count_cdf(cdfs, n, np.array([x]), [ks[col]])[0, 0])

    a, b = 0, gallery
    while b - a > 1:
        mid = (a + b) // 2
        a, b = (mid, b) if g(mid, 0) >= 1.0 - _EDGE else (a, mid)
    lo = a
    a, b = lo, gallery
    while b - a > 1:
        mid = (a + b) // 2
        a, b = (a, mid) if g(mid, -1) <= _EDGE else (mid, b)
    window = _dft_count_cdf(cdfs, n, np.arange(lo + 1, b), ks)
    return float(lo + 1 + window.sum(axis=0).mean())


def _random_counts(videos: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 13, videos)


CASES = {
    "[1]*2000": [1] * 2000,  # CREATE-sample single-reference: V2T 2000 among 2000
    "[10]*200": [10] * 200,  # CREATE-sample: T2V 2000 queries among 200, V2T m=10 among 2000
    "[1]*200": [1] * 200,
    "[2,1,1]": [2, 1, 1],
    "[1]": [1],  # one video, one text: galleries of 1
    "[1,1]": [1, 1],
    "[2]": [2],
    "[1,2]": [1, 2],  # galleries of 2 and 3
    "[1,1,1]": [1, 1, 1],
    "[3,1,1,2,5]": [3, 1, 1, 2, 5],
    "[10]*33": [10] * 33,  # odd
    "hetero 301": _random_counts(301, 1),  # odd number of videos
    "hetero 1000": _random_counts(1000, 2),
}


@pytest.mark.parametrize("counts", CASES.values(), ids=CASES.keys())
def test_median_rank_matches_the_full_dft(counts) -> None:
    counts = np.asarray(counts, dtype=np.int64)
    videos, texts = len(counts), int(counts.sum())
    for gallery, relevant in ((videos, np.ones(texts, dtype=np.int64)), (texts, counts)):
        want = _dft_median_rank(gallery, relevant)
        assert chance_median_rank(gallery, relevant) == pytest.approx(want, rel=1e-9, abs=0)


@pytest.mark.slow
@pytest.mark.parametrize("counts", [[10] * 5000], ids=["CREATE test [10]*5000"])
def test_median_rank_matches_the_full_dft_at_create_size(counts) -> None:
    got = retrieval_chance(counts)
    for direction, gallery, relevant in (
        ("t2v", 5000, np.ones(50000, dtype=np.int64)),
        ("v2t", 50000, counts),
    ):
        assert got[direction]["MdR"] == pytest.approx(_dft_median_rank(gallery, relevant), rel=1e-9, abs=0)


def _exact_count_cdf(sfs: list[tuple[np.ndarray, int]], x: int, kmax: int) -> list[Fraction]:
    """``P(S(x) <= k - 1)`` for ``k = 1 .. kmax``, in rationals (the float inputs taken exactly)."""
    dist = [Fraction(1)]
    for sf, count in sfs:
        q = Fraction(float(sf[x]))
        p = 1 - q
        binom = [math.comb(count, j) * p**j * q ** (count - j) for j in range(count + 1)]
        dist = [
            sum(
                (dist[i] * binom[j - i] for i in range(max(0, j - count), min(j, len(dist) - 1) + 1)),
                Fraction(0),
            )
            for j in range(len(dist) + count)
        ]
    cum, out = Fraction(0), []
    for k in range(1, kmax + 1):
        cum += dist[k - 1]
        out.append(cum)
    return out


@pytest.mark.parametrize(
    "gallery,counts",
    [(2000, [10] * 120), (130, [1] * 131), (60, [1, 2, 3, 5, 12] * 9 + [7, 7]), (3, [1, 2, 3]), (2, [1])],
)
def test_count_cdf_is_exact_to_rounding(gallery: int, counts: list[int]) -> None:
    """Every x, including the ends where S(x) is all but certain, and every k: within 1e-14."""
    uniq, per = np.unique(counts, return_counts=True)
    sfs = [(best_rank_sf(gallery, int(m)), int(c)) for m, c in zip(uniq, per)]
    n = len(counts)
    xs = np.unique(np.linspace(0, gallery, 25).astype(np.int64))
    ks = list(range(1, n + 1))
    got = chance._count_cdf(sfs, n, xs, ks)
    for row, x in enumerate(xs):
        want = _exact_count_cdf(sfs, int(x), n)
        assert np.abs(got[row] - np.array([float(w) for w in want])).max() <= 1e-14, int(x)


def test_t2v_median_is_the_midpoint_to_rounding() -> None:
    """Ranks uniform on 1..M are symmetric: E[median] = (M + 1) / 2 but for the rounding of F(x)."""
    assert chance_median_rank(5000, np.ones(50000, dtype=np.int64)) == pytest.approx(2500.5, abs=1e-9)
    assert chance_median_rank(4999, np.ones(49999, dtype=np.int64)) == pytest.approx(2500.0, abs=1e-9)
