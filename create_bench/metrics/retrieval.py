"""Retrieval ranks and recall (layer 2): exact, tie-aware, memory-bounded.

For every query the similarity row against the whole gallery is computed in row chunks (memory
O(chunk x gallery), never queries x gallery at once) and reduced to three counts at the score
``s`` of the query's best relevant item:

- ``g``: non-relevant items scoring strictly above ``s``;
- ``r``: relevant items scoring exactly ``s`` (at least 1: the best one itself);
- ``t``: non-relevant items scoring exactly ``s``.

Tie policies (the policy goes into the signature):

- ``expected`` (default): the rank under uniformly random tie-breaking. The best relevant item's
  expected rank is ``g + (r + t + 1) / (r + 1)`` (``g + 1 + t/2`` with one relevant item), and
  R@K counts ``P(rank <= K) = 1 - C(t, m) / C(t + r, m)`` with ``m = K - g`` (0 when ``m <= 0``,
  1 when ``m > t``). A constant scorer therefore gets exactly chance level.
- ``optimistic``: ties broken in the query's favour (rank ``g + 1``), for comparison only.
- ``pessimistic``: ties broken against it (rank ``g + t + 1``).

Ranks are 1-based; R@K is reported x100, MdR is ``numpy.median`` of the ranks and MnR their mean.
Scores are float32 by default; ``dtype="float64"`` is the check path. NaN or infinite scores raise
:class:`~create_bench.errors.MetricInputError` naming the query. Inputs may be numpy arrays,
numpy memmaps or torch tensors (converted with ``.detach().cpu().numpy()``; torch itself is
never imported here).

>>> import numpy as np
>>> sim = np.array([[0.9, 0.1, 0.5], [0.2, 0.2, 0.2], [0.3, 0.8, 0.1]], dtype=np.float32)
>>> stats = ranks_from_similarity(sim, np.array([0, 1, 2]))
>>> stats.ranks.tolist()  # query 1 ties with all three: expected rank (1 + 2 + 3) / 3
[1.0, 2.0, 3.0]
>>> {k: round(v, 2) for k, v in stats.summary(ks=(1, 2)).items()}
{'R@1': 44.44, 'R@2': 55.56, 'MdR': 2.0, 'MnR': 2.0}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from create_bench.errors import MetricInputError

TIE_POLICIES = ("expected", "optimistic", "pessimistic")
DEFAULT_KS = (1, 5, 10)
#: Default chunk: this many similarity entries per chunk (32 Mi -> 128 MiB in float32).
CHUNK_ELEMENTS = 32 * 2**20


@dataclass(frozen=True)
class RankStats:
    """Per-query tie counts; everything else (ranks, recall, summaries) derives from them.

    Attributes:
        better: ``g`` per query, non-relevant items strictly above the best relevant score.
        tied_relevant: ``r`` per query, relevant items at the best relevant score (>= 1).
        tied_other: ``t`` per query, non-relevant items at the best relevant score.
        ties: the tie policy used for :attr:`ranks` and :meth:`recall_at`.
        gallery_size: number of gallery items each query was ranked against.
    """

    better: np.ndarray
    tied_relevant: np.ndarray
    tied_other: np.ndarray
    ties: str = "expected"
    gallery_size: int = 0

    def __post_init__(self) -> None:
        _check_ties(self.ties)

    def __len__(self) -> int:
        return int(self.better.shape[0])

    def with_ties(self, ties: str) -> RankStats:
        """The same counts under another tie policy."""
        return RankStats(self.better, self.tied_relevant, self.tied_other, ties, self.gallery_size)

    def subset(self, index: np.ndarray) -> RankStats:
        """The statistics of some queries (boolean mask or integer index)."""
        return RankStats(
            self.better[index],
            self.tied_relevant[index],
            self.tied_other[index],
            self.ties,
            self.gallery_size,
        )

    @property
    def ranks(self) -> np.ndarray:
        """Rank of each query's best relevant item under the tie policy (float64, 1-based)."""
        g = self.better.astype(np.float64)
        r = self.tied_relevant.astype(np.float64)
        t = self.tied_other.astype(np.float64)
        if self.ties == "optimistic":
            return g + 1.0
        if self.ties == "pessimistic":
            return g + t + 1.0
        return g + (r + t + 1.0) / (r + 1.0)

    def recall_at(self, k: int) -> np.ndarray:
        """Per query, the probability (0..1) that the best relevant item ranks within ``k``."""
        g, r, t = self.better, self.tied_relevant, self.tied_other
        if self.ties == "optimistic":
            return (g + 1 <= k).astype(np.float64)
        if self.ties == "pessimistic":
            return (g + t + 1 <= k).astype(np.float64)
        m = k - g
        out = (m > t).astype(np.float64)  # every tied non-relevant item fits above: certain
        partial = np.flatnonzero((m > 0) & (m <= t))
        if partial.size:
            out[partial] = 1.0 - _binom_ratio(t[partial], r[partial], m[partial])
        return out

    def summary(self, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
        """``R@K`` (x100) for each ``k``, then ``MdR`` and ``MnR``."""
        if len(self) == 0:
            raise MetricInputError("no queries to score")
        out = {f"R@{k}": float(100.0 * self.recall_at(k).mean()) for k in ks}
        ranks = self.ranks
        out["MdR"] = float(np.median(ranks))
        out["MnR"] = float(np.mean(ranks))
        return out

    def weighted_summary(
        self, weights: np.ndarray, groups: np.ndarray | None = None, ks: Sequence[int] = DEFAULT_KS
    ) -> dict[str, np.ndarray]:
        """:meth:`summary` for each row of unit weights ``[B, U]`` (bootstrap resamples).

        ``groups`` maps each query to its unit (e.g. the video a text query belongs to, so a
        video's queries are resampled together); by default every query is its own unit.
        """
        from create_bench.metrics.bootstrap import weighted_median

        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        n_units = weights.shape[1]
        owner = np.arange(len(self)) if groups is None else np.asarray(groups, dtype=np.int64)
        if owner.shape != (len(self),) or (owner.size and (owner.min() < 0 or owner.max() >= n_units)):
            raise MetricInputError(
                f"groups must map each of the {len(self)} queries to one of {n_units} units"
            )
        count = weights @ np.bincount(owner, minlength=n_units).astype(np.float64)
        ranks = self.ranks
        out = {
            f"R@{k}": 100.0 * (weights @ np.bincount(owner, self.recall_at(k), n_units)) / count for k in ks
        }
        out["MdR"] = weighted_median(ranks, weights, owner)
        out["MnR"] = (weights @ np.bincount(owner, ranks, n_units)) / count
        return out


def _binom_ratio(t: np.ndarray, r: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``C(t, m) / C(t + r, m)`` for ``0 < m <= t``, elementwise, without overflow.

    As a product ``prod_{i<m} (t - i) / (t + r - i)`` when ``m`` is small (exact to rounding), in
    log-gamma form otherwise.
    """
    t = t.astype(np.float64)
    r = r.astype(np.float64)
    m = m.astype(np.int64)
    out = np.ones(t.shape, dtype=np.float64)
    small = m <= 64
    if small.any():
        ts, rs, ms = t[small], r[small], m[small]
        acc = np.ones(ts.shape, dtype=np.float64)
        for i in range(int(ms.max())):
            active = i < ms
            acc[active] *= (ts[active] - i) / (ts[active] + rs[active] - i)
        out[small] = acc
    big = np.flatnonzero(~small)
    for j in big:  # rare: only huge K with many ties; lgamma keeps it finite
        tj, rj, mj = float(t[j]), float(r[j]), float(m[j])
        log_ratio = (
            math.lgamma(tj + 1)
            - math.lgamma(tj - mj + 1)
            - math.lgamma(tj + rj + 1)
            + math.lgamma(tj + rj - mj + 1)
        )
        out[j] = math.exp(log_ratio)
    return out


# --------------------------------------------------------------------------------------------
# input handling


def _check_ties(ties: str) -> None:
    if ties not in TIE_POLICIES:
        raise MetricInputError(f"ties must be one of {', '.join(TIE_POLICIES)}, got {ties!r}")


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """numpy view of an array-like or torch tensor (torch is never imported here)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:
        raise MetricInputError(f"{name}: cannot be read as an array ({exc})") from None


def _check_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise MetricInputError(f"dtype must be float32 or float64, got {dt}")
    return dt


@dataclass(frozen=True)
class _Targets:
    """Relevant gallery items of every query in CSR form: ``cols[offsets[i]:offsets[i+1]]``."""

    offsets: np.ndarray  # int64 [Q + 1]
    cols: np.ndarray  # int64 [nnz]
    single: bool  # exactly one relevant item per query (fast path)


def _name(i: int, query_ids: Sequence[str] | None) -> str:
    return f"query {i}" + (f" ({query_ids[i]!r})" if query_ids is not None and i < len(query_ids) else "")


def _parse_targets(
    targets: Any, n_queries: int, gallery_size: int, query_ids: Sequence[str] | None
) -> _Targets:
    if isinstance(targets, (list, tuple)) and any(isinstance(t, (list, tuple, np.ndarray)) for t in targets):
        lists = [np.asarray(_to_numpy(t, "targets")).reshape(-1) for t in targets]
    else:
        arr = _to_numpy(targets, "targets")
        if arr.ndim not in (1, 2):
            raise MetricInputError(f"targets must be [Q] indices or Q index lists, got shape {arr.shape}")
        if arr.ndim == 1:  # one relevant item per query
            _check_integer(arr)
            if arr.shape[0] != n_queries:
                raise MetricInputError(f"targets has {arr.shape[0]} entries for {n_queries} queries")
            offsets = np.arange(n_queries + 1, dtype=np.int64)
            return _check_range(offsets, arr.astype(np.int64), gallery_size, query_ids)
        lists = list(arr)
    if len(lists) != n_queries:
        raise MetricInputError(f"targets has {len(lists)} entries for {n_queries} queries")
    for x in lists:
        _check_integer(x)
    sizes = np.array([len(x) for x in lists], dtype=np.int64)
    empty = np.flatnonzero(sizes == 0)
    if empty.size:
        raise MetricInputError(f"{_name(int(empty[0]), query_ids)} has no relevant gallery item")
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    cols = np.concatenate(lists).astype(np.int64) if lists else np.zeros(0, np.int64)
    tg = _check_range(offsets, cols, gallery_size, query_ids)
    if not tg.single:
        owner = np.repeat(np.arange(n_queries, dtype=np.int64), sizes)
        uniq, counts = np.unique(owner * gallery_size + cols, return_counts=True)
        if (counts > 1).any():
            q = int(uniq[counts > 1][0] // gallery_size)
            raise MetricInputError(f"{_name(q, query_ids)}: a target index is listed twice")
    return tg


def _check_integer(arr: np.ndarray) -> None:
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise MetricInputError(f"targets must be integer gallery indices, got dtype {arr.dtype}")


def _check_range(
    offsets: np.ndarray, cols: np.ndarray, gallery_size: int, query_ids: Sequence[str] | None
) -> _Targets:
    """Targets in CSR form after checking every index is inside the gallery."""
    bad = np.flatnonzero((cols < 0) | (cols >= gallery_size))
    if bad.size:
        q = int(np.searchsorted(offsets, bad[0], side="right") - 1)
        raise MetricInputError(
            f"{_name(q, query_ids)}: target index {int(cols[bad[0]])} outside the gallery [0, {gallery_size})"
        )
    single = bool(len(cols) == len(offsets) - 1 and (np.diff(offsets) == 1).all())
    return _Targets(offsets, cols, single)


def _chunk_rows(chunk_size: int | None, n_queries: int, gallery_size: int) -> int:
    """Query rows per chunk: ``chunk_size``, or about :data:`CHUNK_ELEMENTS` scores per chunk."""
    chunk = int(chunk_size or max(1, CHUNK_ELEMENTS // max(1, gallery_size)))
    if chunk < 1:
        raise MetricInputError(f"chunk_size must be >= 1, got {chunk_size}")
    return min(chunk, max(1, n_queries))


# --------------------------------------------------------------------------------------------
# the core: one chunk of similarity rows -> counts


def _check_finite_rows(sim: np.ndarray, start: int, query_ids: Sequence[str] | None) -> None:
    """NaN/inf check: a row sum is finite when every entry is (an overflowing sum of finite values
    is double-checked entry by entry before calling it an error)."""
    with np.errstate(over="ignore", invalid="ignore"):
        suspicious = np.flatnonzero(~np.isfinite(sim.sum(axis=1)))
    for i in suspicious:
        if not np.isfinite(sim[i]).all():
            raise MetricInputError(
                f"{_name(start + int(i), query_ids)} has NaN or infinite similarity scores"
            )


def _count_chunk(
    sim: np.ndarray,
    start: int,
    tg: _Targets,
    cmp: np.ndarray,
    query_ids: Sequence[str] | None,
    check_finite: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts ``(g, r, t)`` for the rows ``start .. start + len(sim)`` of the similarity matrix."""
    n = sim.shape[0]
    rows = np.arange(n)
    if check_finite:
        _check_finite_rows(sim, start, query_ids)
    if tg.single:
        best = sim[rows, tg.cols[start : start + n]]
        r = np.ones(n, dtype=np.int64)
    else:
        lo, hi = tg.offsets[start], tg.offsets[start + n]
        local_offsets = tg.offsets[start : start + n + 1] - lo
        owner = np.repeat(rows, np.diff(local_offsets))
        vals = sim[owner, tg.cols[lo:hi]]
        best = np.maximum.reduceat(vals, local_offsets[:-1])
        r = np.add.reduceat((vals == best[owner]).astype(np.int64), local_offsets[:-1])
    col = best[:, None]
    out = cmp[:n]
    np.greater(sim, col, out=out)
    g = _true_per_row(out)
    np.equal(sim, col, out=out)
    t = _true_per_row(out) - r
    return g, r, t


def _true_per_row(mask: np.ndarray) -> np.ndarray:
    """Number of true entries in each row of a bool array, as int64 (summed as bytes: faster)."""
    acc = np.uint32 if mask.shape[1] < 2**32 else np.uint64
    return mask.view(np.uint8).sum(axis=1, dtype=acc).astype(np.int64)


def _zeros3(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)


def l2_normalise(x: Any) -> np.ndarray:
    """Rows scaled to unit L2 norm, in float32: the contract's similarity is the dot product of
    L2-normalised embeddings. The one normalisation of create-bench (the harness before writing
    predictions, scoring before ranking).

    Norms are computed in float32; rows whose float32 norm overflows or underflows (values near
    the ends of float32's range) are normalised in float64 instead, so they keep their direction.
    An all-zero row stays zero, so it ties with everything rather than becoming NaN.

    >>> l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore", under="ignore"):
        norms = np.linalg.norm(x, axis=1, keepdims=True)
    out = x / np.where(norms > 0, norms, 1.0)
    bad = (~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0)) & x.any(axis=1) if x.ndim == 2 else None
    if bad is not None and bad.any():
        x64 = x[bad].astype(np.float64)
        out[bad] = (x64 / np.linalg.norm(x64, axis=1, keepdims=True)).astype(np.float32)
    return out


def ranks_from_similarity(
    similarity: Any,
    targets: Any,
    *,
    ties: str = "expected",
    chunk_size: int | None = None,
    dtype: Any = np.float32,
    query_ids: Sequence[str] | None = None,
) -> RankStats:
    """Per-query rank statistics from a precomputed ``[Q, G]`` similarity matrix.

    Args:
        similarity: ``[Q, G]`` scores (higher is better); may be a memmap or a transposed view,
            read ``chunk_size`` rows at a time.
        targets: ``[Q]`` gallery indices, or ``Q`` lists of relevant gallery indices.
        ties: ``expected`` (default), ``optimistic`` or ``pessimistic``.
        chunk_size: rows per chunk (default: about 32 Mi similarity entries per chunk).
        dtype: ``float32`` (default) or ``float64`` (check path).
        query_ids: names used in error messages.

    Raises:
        MetricInputError: bad shapes, targets out of range, NaN/inf scores (naming the query).
    """
    _check_ties(ties)
    dt = _check_dtype(dtype)
    sim = _to_numpy(similarity, "similarity")
    if sim.ndim != 2:
        raise MetricInputError(f"similarity must be 2-D [queries, gallery], got shape {sim.shape}")
    n_q, n_g = sim.shape
    if n_g == 0:
        raise MetricInputError("similarity has an empty gallery")
    tg = _parse_targets(targets, n_q, n_g, query_ids)
    chunk = _chunk_rows(chunk_size, n_q, n_g)
    g, r, t = _zeros3(n_q)
    cmp = np.empty((chunk, n_g), dtype=bool)
    for start in range(0, n_q, chunk):
        block = np.ascontiguousarray(sim[start : start + chunk], dtype=dt)
        sl = slice(start, start + block.shape[0])
        g[sl], r[sl], t[sl] = _count_chunk(block, start, tg, cmp, query_ids)
    return RankStats(g, r, t, ties, n_g)


def rank_statistics(
    queries: Any,
    gallery: Any,
    targets: Any,
    *,
    ties: str = "expected",
    chunk_size: int | None = None,
    dtype: Any = np.float32,
    query_ids: Sequence[str] | None = None,
) -> RankStats:
    """Per-query rank statistics for dot-product retrieval of ``queries`` [Q, D] over ``gallery`` [G, D].

    The similarity ``queries @ gallery.T`` is computed ``chunk_size`` query rows at a time into one
    reused buffer; see :func:`ranks_from_similarity` for the other arguments.
    """
    _check_ties(ties)
    dt = _check_dtype(dtype)
    q = _to_numpy(queries, "queries")
    gal = _to_numpy(gallery, "gallery")
    if q.ndim != 2 or gal.ndim != 2:
        raise MetricInputError(f"queries and gallery must be 2-D, got shapes {q.shape} and {gal.shape}")
    if q.shape[1] != gal.shape[1]:
        raise MetricInputError(f"queries have dimension {q.shape[1]} but the gallery has {gal.shape[1]}")
    n_q, n_g = q.shape[0], gal.shape[0]
    if n_g == 0:
        raise MetricInputError("the gallery is empty")
    tg = _parse_targets(targets, n_q, n_g, query_ids)
    gal = np.ascontiguousarray(gal, dtype=dt)
    _finite_max(gal, "gallery item", None)
    # Finite inputs whose products cannot overflow give finite scores: then the per-chunk check
    # (one more pass over every score) is skipped and only the query rows are checked.
    q_max = _finite_max(q, "query", query_ids)
    g_max = float(np.abs(gal).max()) if gal.size else 0.0
    check_scores = not q_max * g_max * q.shape[1] < float(np.finfo(dt).max) / 4
    chunk = _chunk_rows(chunk_size, n_q, n_g)
    g, r, t = _zeros3(n_q)
    buf = np.empty((chunk, n_g), dtype=dt)
    cmp = np.empty((chunk, n_g), dtype=bool)
    for start in range(0, n_q, chunk):
        qb = np.ascontiguousarray(q[start : start + chunk], dtype=dt)
        n = qb.shape[0]
        with np.errstate(over="ignore", invalid="ignore"):  # overflow shows up as inf, checked below
            sim = np.matmul(qb, gal.T, out=buf[:n])
        sl = slice(start, start + n)
        g[sl], r[sl], t[sl] = _count_chunk(sim, start, tg, cmp, query_ids, check_scores)
    return RankStats(g, r, t, ties, n_g)


def _finite_max(x: np.ndarray, what: str, ids: Sequence[str] | None) -> float:
    """Largest absolute value of ``x`` [N, D], checked chunk-wise for NaN/inf (naming the row)."""
    step = max(1, (8 << 20) // max(1, x.shape[1]))
    top = 0.0
    for start in range(0, x.shape[0], step):
        block = np.asarray(x[start : start + step])
        ok = np.isfinite(block).all(axis=1)
        if not ok.all():
            i = start + int(np.flatnonzero(~ok)[0])
            raise MetricInputError(
                f"{_name(i, ids) if what == 'query' else f'{what} {i}'} has NaN or infinite values"
            )
        if block.size:
            top = max(top, float(np.abs(block).max()))
    return top


def retrieval_scores(
    queries: Any,
    gallery: Any,
    targets: Any,
    *,
    ties: str = "expected",
    chunk_size: int | None = None,
    dtype: Any = np.float32,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """R@1, R@5, R@10 (x100), MdR and MnR of ``queries`` [Q, D] retrieving from ``gallery`` [G, D].

    Args:
        queries: L2-normalised query embeddings (numpy or torch).
        gallery: L2-normalised gallery embeddings.
        targets: ``[Q]`` index of each query's gallery item, or ``Q`` lists of relevant indices
            (the best-ranked one counts, as in V2T with several texts per video).
        ties: ``expected`` (default), ``optimistic`` or ``pessimistic``.
        chunk_size: query rows per chunk; memory is O(chunk_size x G).
        dtype: ``float32`` (default) or ``float64``.
        ks: the cut-offs K of R@K.

    >>> import numpy as np
    >>> g = np.eye(3, dtype=np.float32)
    >>> retrieval_scores(g, g, np.arange(3))
    {'R@1': 100.0, 'R@5': 100.0, 'R@10': 100.0, 'MdR': 1.0, 'MnR': 1.0}
    >>> const = np.ones((4, 2), dtype=np.float32) / np.sqrt(2)  # a constant scorer: chance level
    >>> retrieval_scores(const, const, np.arange(4), ks=(1,))
    {'R@1': 25.0, 'MdR': 2.5, 'MnR': 2.5}
    >>> retrieval_scores(const, const, [[0, 1], [1, 2], [2, 3], [3, 0]], ks=(1,))  # two relevant each
    {'R@1': 50.0, 'MdR': 1.6666666666666667, 'MnR': 1.6666666666666667}
    """
    stats = rank_statistics(queries, gallery, targets, ties=ties, chunk_size=chunk_size, dtype=dtype)
    return stats.summary(ks)
