"""Both retrieval directions from one similarity matrix (layer 2): T2V and V2T of one text kind.

:func:`paired_rank_statistics` computes ``texts @ videos.T`` once, in row chunks (memory
O(chunk x videos), as :func:`~create_bench.metrics.retrieval.rank_statistics`), and reduces every
chunk to both directions' tie counts: T2V row by row (each text's own video), V2T column by
column (each video's best own text among all texts). The result equals
``rank_statistics(texts, videos, text_video)`` and ``ranks_from_similarity(S.T, own_texts)`` on
that one float32 matrix ``S``, so the two directions see the same scores, as they do when a
submission gives ``similarity_<kind>.npy``; computing the matrix once halves the matmul work.

V2T needs each video's threshold ``s`` (the best score of its own texts) before its column is
counted, and those scores come out of the same pass. So the pass counts against a *band*: ``s`` is
estimated by dot products of the same inputs, and the rounding of a float32 dot product of length
``D`` is at most ``D * 2**-24 * |t| |v|`` (any summation order, FMA or not; the estimate's and the
matrix's alike), so ``s`` lies in ``[lo, hi]`` = estimate -/+ three times that bound. Scores above ``hi`` are counted; the few in
the band are kept (row, column, value) and compared with ``s`` once the pass has it. Every count
is of the matrix's own float32 values (the band only decides what to keep), and the pass checks
that each ``s`` really fell inside its band. When one did not (it cannot with IEEE arithmetic) or
the band holds too many scores (a near-constant scorer: everything ties), a second pass over the
same chunks (same matmul, same values) counts V2T against the thresholds the first pass found.
When the inputs could overflow, both directions take
:func:`~create_bench.metrics.retrieval.rank_statistics`' checked path, each on its own matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from create_bench.errors import MetricInputError
from create_bench.metrics.retrieval import (
    RankStats,
    _check_dtype,
    _check_ties,
    _chunk_rows,
    _count_chunk,
    _finite_max,
    _name,
    _parse_targets,
    _Targets,
    _to_numpy,
    rank_statistics,
)

#: Most band scores kept over the pass (x 16 bytes) before V2T falls back to its own matrix.
BAND_LIMIT = 8 * 2**20


def paired_rank_statistics(
    texts: Any,
    videos: Any,
    text_video: Any,
    *,
    ties: str = "expected",
    chunk_size: int | None = None,
    dtype: Any = np.float32,
    text_ids: Sequence[str] | None = None,
    video_ids: Sequence[str] | None = None,
) -> tuple[RankStats, RankStats]:
    """T2V and V2T rank statistics of dot-product retrieval between ``texts`` [T, D] and ``videos`` [V, D].

    Args:
        texts: text embeddings (the T2V queries, the V2T gallery).
        videos: video embeddings (the T2V gallery, the V2T queries).
        text_video: ``[T]`` index of each text's video; every video needs at least one text.
        ties, chunk_size, dtype: as in :func:`~create_bench.metrics.retrieval.rank_statistics`
            (``chunk_size`` counts text rows).
        text_ids, video_ids: names used in error messages.

    Returns:
        ``(t2v, v2t)``: one query per text (its video relevant) and one per video (its texts
        relevant, the best one counts), in the order of ``texts`` and ``videos``.

    Raises:
        MetricInputError: bad shapes, targets out of range, a video without texts, NaN/inf values.
    """
    _check_ties(ties)
    dt = _check_dtype(dtype)
    q, gal = _to_numpy(texts, "texts"), _to_numpy(videos, "videos")
    if q.ndim != 2 or gal.ndim != 2:
        raise MetricInputError(f"texts and videos must be 2-D, got shapes {q.shape} and {gal.shape}")
    if q.shape[1] != gal.shape[1]:
        raise MetricInputError(f"texts have dimension {q.shape[1]} but the videos have {gal.shape[1]}")
    n_t, n_v = q.shape[0], gal.shape[0]
    if n_v == 0:
        raise MetricInputError("the gallery is empty")
    tg = _parse_targets(np.asarray(_to_numpy(text_video, "text_video")).reshape(-1), n_t, n_v, text_ids)
    if not tg.single:
        raise MetricInputError("text_video must give one video per text")
    per_video = np.bincount(tg.cols, minlength=n_v)
    if (per_video == 0).any():
        empty = int(np.flatnonzero(per_video == 0)[0])
        raise MetricInputError(f"{_name(empty, video_ids)} has no relevant gallery item")
    gal = np.ascontiguousarray(gal, dtype=dt)
    _finite_max(gal, "gallery item", None)
    q_max = _finite_max(q, "query", text_ids)
    g_max = float(np.abs(gal).max()) if gal.size else 0.0
    if not q_max * g_max * q.shape[1] < float(np.finfo(dt).max) / 4:  # scores could overflow: checked paths
        t2v = rank_statistics(q, gal, tg.cols, ties=ties, chunk_size=chunk_size, dtype=dt, query_ids=text_ids)
        return t2v, rank_statistics(
            gal, q, _own_lists(tg.cols, n_v), ties=ties, dtype=dt, query_ids=video_ids
        )
    chunk = _chunk_rows(chunk_size, n_t, n_v)
    t2v, own, v2t = _one_pass(q, gal, tg, ties, chunk, dt, text_ids)
    if v2t is None:  # the band did not hold: count V2T in a second pass over the same matrix
        v2t = _second_pass(q, gal, tg.cols, own, ties, chunk, dt)
    return t2v, v2t


def _own_lists(text_video: np.ndarray, n_videos: int) -> list[np.ndarray]:
    order = np.argsort(text_video, kind="stable")
    return np.split(order, np.cumsum(np.bincount(text_video, minlength=n_videos))[:-1])


def _bands(
    q: np.ndarray, gal: np.ndarray, text_video: np.ndarray, dt: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Per video, ``[lo, hi]`` (in ``dt``) certain to hold the best score of its own texts.

    The estimate is a ``dt`` dot product itself (its own rounding obeys the same bound), so the
    band is the estimate -/+ three times the bound: the estimate's error, the matrix's, and slack.
    """
    n_v, dim = gal.shape[0], q.shape[1]
    est = np.full(n_v, -np.inf, dtype=np.float64)
    t_norm = np.zeros(n_v, dtype=np.float64)
    step = max(1, (8 << 20) // max(1, dim))
    for s in range(0, q.shape[0], step):
        tb = np.asarray(q[s : s + step], dtype=dt)
        own = text_video[s : s + step]
        np.maximum.at(est, own, np.einsum("ij,ij->i", tb, gal[own]))
        np.maximum.at(t_norm, own, np.sqrt(np.einsum("ij,ij->i", tb, tb, dtype=np.float64)))
    v_norm = np.sqrt(np.einsum("ij,ij->i", gal, gal, dtype=np.float64))
    # |fl(t . v) - t . v| <= gamma_D * sum|t_i v_i| <= gamma_D |t| |v| (Cauchy-Schwarz), any order
    unit = float(np.finfo(dt).eps) / 2
    # (plus one smallest subnormal per operation for underflow)
    delta = 3.0 * (dim + 2) * (unit * t_norm * v_norm * (1 + 1e-6) + float(np.finfo(dt).smallest_subnormal))
    lo = np.nextafter((est - delta).astype(dt), dt.type(-np.inf))
    hi = np.nextafter((est + delta).astype(dt), dt.type(np.inf))
    return lo, hi


def _one_pass(
    q: np.ndarray,
    gal: np.ndarray,
    tg: _Targets,
    ties: str,
    chunk: int,
    dt: np.dtype,
    text_ids: Sequence[str] | None,
) -> tuple[RankStats, np.ndarray, RankStats | None]:
    """T2V counts row by row and V2T counts column by column over one chunked matrix; also each
    text's score against its own video. V2T is None when the band did not hold."""
    n_t, n_v = q.shape[0], gal.shape[0]
    lo, hi = _bands(q, gal, tg.cols, dt)
    g, r, t = np.zeros(n_t, np.int64), np.zeros(n_t, np.int64), np.zeros(n_t, np.int64)
    own = np.empty(n_t, dtype=dt)
    above = np.zeros(n_v, np.int64)
    band: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    kept = 0
    buf = np.empty((chunk, n_v), dtype=dt)
    cmp, cmp2 = np.empty((chunk, n_v), dtype=bool), np.empty((chunk, n_v), dtype=bool)
    for start in range(0, n_t, chunk):
        qb = np.ascontiguousarray(q[start : start + chunk], dtype=dt)
        n = qb.shape[0]
        sim = np.matmul(qb, gal.T, out=buf[:n])
        sl = slice(start, start + n)
        g[sl], r[sl], t[sl] = _count_chunk(sim, start, tg, cmp, text_ids, check_finite=False)
        own[sl] = sim[np.arange(n), tg.cols[sl]]
        if kept > BAND_LIMIT:
            continue
        out, out2 = cmp[:n], cmp2[:n]
        np.greater(sim, hi, out=out)
        above += out.view(np.uint8).sum(axis=0, dtype=np.uint32)
        np.greater_equal(sim, lo, out=out2)
        np.not_equal(out2, out, out=out2)  # lo <= score <= hi
        rows, cols = np.divmod(_true_positions(out2), n_v)
        band.append((rows + start, cols, sim[rows, cols]))
        kept += len(rows)
    t2v = RankStats(g, r, t, ties, n_v)
    if kept > BAND_LIMIT:
        return t2v, own, None
    return t2v, own, _v2t_from_band(own, tg.cols, above, band, lo, hi, ties, n_t)


def _true_positions(mask: np.ndarray) -> np.ndarray:
    """``np.flatnonzero`` of a C-contiguous bool array with few true entries, eight bytes at a time."""
    flat = mask.reshape(-1)
    whole = flat.size // 8 * 8
    words = np.flatnonzero(flat[:whole].view(np.uint64)) * 8
    cand = (words[:, None] + np.arange(8)).reshape(-1)
    tail = np.flatnonzero(flat[whole:]) + whole
    return np.concatenate([cand[flat[cand]], tail])


def _best_own(own: np.ndarray, text_video: np.ndarray, n_v: int) -> tuple[np.ndarray, np.ndarray]:
    """Per video, the best score of its own texts and how many of them reach it."""
    best = np.full(n_v, -np.inf, dtype=own.dtype)
    np.maximum.at(best, text_video, own)
    return best, np.bincount(text_video[own == best[text_video]], minlength=n_v).astype(np.int64)


def _second_pass(
    q: np.ndarray,
    gal: np.ndarray,
    text_video: np.ndarray,
    own: np.ndarray,
    ties: str,
    chunk: int,
    dt: np.dtype,
) -> RankStats:
    """V2T counted column by column over the same chunked matrix again, the thresholds known.

    The chunks are the first pass's (same rows, same matmul), so the scores are the same values.
    """
    n_v = gal.shape[0]
    best, tied_own = _best_own(own, text_video, n_v)
    above, equal = np.zeros(n_v, np.int64), np.zeros(n_v, np.int64)
    buf, cmp = np.empty((chunk, n_v), dtype=dt), np.empty((chunk, n_v), dtype=bool)
    for start in range(0, q.shape[0], chunk):
        qb = np.ascontiguousarray(q[start : start + chunk], dtype=dt)
        sim, out = np.matmul(qb, gal.T, out=buf[: qb.shape[0]]), cmp[: qb.shape[0]]
        above += np.greater(sim, best, out=out).view(np.uint8).sum(axis=0, dtype=np.uint32)
        equal += np.equal(sim, best, out=out).view(np.uint8).sum(axis=0, dtype=np.uint32)
    return RankStats(above, tied_own, equal - tied_own, ties, q.shape[0])  # own texts never exceed best


def _v2t_from_band(
    own: np.ndarray,
    text_video: np.ndarray,
    above: np.ndarray,
    band: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    lo: np.ndarray,
    hi: np.ndarray,
    ties: str,
    n_texts: int,
) -> RankStats | None:
    """V2T counts once every video's best own score ``s`` is known (None if one left its band)."""
    n_v = len(above)
    best, tied_own = _best_own(own, text_video, n_v)
    if not ((best >= lo) & (best <= hi)).all():
        return None
    rows = np.concatenate([b[0] for b in band]) if band else np.zeros(0, np.int64)
    cols = np.concatenate([b[1] for b in band]) if band else np.zeros(0, np.int64)
    vals = np.concatenate([b[2] for b in band]) if band else np.zeros(0, own.dtype)
    other = text_video[rows] != cols  # own texts are counted in tied_own
    cols, vals = cols[other], vals[other]
    better = above + np.bincount(cols[vals > best[cols]], minlength=n_v)
    tied = np.bincount(cols[vals == best[cols]], minlength=n_v)
    return RankStats(better, tied_own, tied.astype(np.int64), ties, n_texts)


__all__ = ["BAND_LIMIT", "paired_rank_statistics"]
