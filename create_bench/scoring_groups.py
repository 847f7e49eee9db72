"""Per-group statistics of scoring (layer 4): the retrieval groups (ranks from the similarity
matrix, per query) and the generation groups (captioning statistics per video, reference tokens
cached per dataset), each a :class:`_Group` whose bootstrap statistic and per-category scores come
from the same per-item statistics.

Split out of :mod:`create_bench.scoring` (private helpers of :func:`create_bench.scoring.score_predictions`).
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from create_bench.errors import DataError, PredictionError
from create_bench.metrics.bootstrap import Proportion
from create_bench.metrics.captioning import caption_statistics, refs_field
from create_bench.metrics.chance_cache import Levels, cached_retrieval_chance
from create_bench.metrics.retrieval import (
    RankStats,
    l2_normalise,
    ranks_from_similarity,
)
from create_bench.metrics.retrieval_pair import paired_rank_statistics
from create_bench.metrics.token_cache import reference_tokens
from create_bench.metrics.tokens import TokenTable
from create_bench.predictions import (
    GENERATIONS,
    TEXT_IDS,
    VIDEO_IDS,
    Predictions,
    similarity_file,
)
from create_bench.scoring_references import References
from create_bench.text import NORMALIZER_NAME, get_tokenizer
from create_bench.types import (
    describe_id_differences,
    id_differences,
    parse_text_id,
    text_id,
)


@dataclass
class _Group:
    """One scored group: its scores, a bootstrap statistic over video weights, per-category scores."""

    scores: dict[str, float]
    weighted: Callable[[np.ndarray], dict[str, np.ndarray]]
    per_category: dict[int, dict[str, float]]
    fields: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    #: metric -> :class:`Proportion` for metrics that are means of [0, 1] per-query values (R@K)
    proportions: dict[str, Proportion] = field(default_factory=dict)
    #: metric -> its expected value under random ranking (retrieval groups only)
    chance: dict[str, float] | None = None


def _check_ids(
    what: str, expected: Iterable[str], got: Iterable[str], split: str, allowed: Iterable[str] | None = None
) -> None:
    """The predictions' ids against the split's (:func:`create_bench.types.id_differences`)."""
    missing, extra = id_differences(expected, got, allowed=allowed)
    if missing or extra:
        detail = describe_id_differences(missing, extra, extra_note=" not in the split")
        raise PredictionError(f"{what} does not match the {split!r} split; {detail}")


def _retrieval_groups(
    preds: Predictions,
    refs: References,
    full: References,
    kind: str,
    split: str,
    ties: str,
    chance_levels: _ChanceLevels | None = None,
) -> dict[str, _Group]:
    """``t2v_<kind>`` and ``v2t_<kind>`` from embeddings or a similarity matrix (chance levels
    from ``chance_levels``, default: computed here, no cache)."""
    assert preds.video_ids is not None
    if not refs.has_texts(kind):
        empty = next(v for v, t in zip(refs.vids, refs.texts[kind]) if not t)
        raise DataError(f"cannot score {kind} retrieval: a video has no {kind}s", vid=empty)
    vid_index = {v: i for i, v in enumerate(refs.vids)}
    _check_ids(VIDEO_IDS, refs.vids, preds.video_ids, split)
    col_of_vid = {v: j for j, v in enumerate(preds.video_ids)}
    rows, row_ids = preds.text_rows(kind)
    wanted = {text_id(v, kind, k) for v, t in zip(refs.vids, refs.texts[kind]) for k in range(len(t))}
    known = (
        wanted
        if full is refs
        else {text_id(v, kind, k) for v, t in zip(full.vids, full.texts[kind]) for k in range(len(t))}
    )
    _check_ids(f"{TEXT_IDS} ({kind})", wanted, row_ids, split, allowed=known)
    used = np.array([i for i, tid in enumerate(row_ids) if tid in wanted], dtype=np.int64)
    used_ids = [row_ids[i] for i in used]
    text_vid = [parse_text_id(t)[0] for t in used_ids]
    t2v_targets = np.array([col_of_vid[v] for v in text_vid], dtype=np.int64)
    t2v_owner = np.array([vid_index[v] for v in text_vid], dtype=np.int64)
    v2t_owner = np.array([vid_index[v] for v in preds.video_ids], dtype=np.int64)

    if kind in preds.similarity:
        sim = preds.similarity[kind]
        if len(used) != sim.shape[0]:
            sim = np.asarray(sim[used])
        v2t_lists: list[list[int]] = [[] for _ in preds.video_ids]
        for i, j in enumerate(t2v_targets.tolist()):
            v2t_lists[j].append(i)
        t2v = ranks_from_similarity(sim, t2v_targets, ties=ties, query_ids=used_ids)
        v2t = ranks_from_similarity(sim.T, v2t_lists, ties=ties, query_ids=preds.video_ids)
        source = similarity_file(kind)
    else:
        assert preds.text_embeddings is not None and preds.video_embeddings is not None
        pos = rows[used]
        texts = preds.text_embeddings
        contiguous = len(pos) and np.array_equal(pos, np.arange(pos[0], pos[0] + len(pos)))
        texts = texts[pos[0] : pos[0] + len(pos)] if contiguous else np.asarray(texts[pos])
        texts, videos = l2_normalise(texts), l2_normalise(preds.video_embeddings)
        # one similarity matrix for both directions: a video's texts are those that target it
        t2v, v2t = paired_rank_statistics(
            texts, videos, t2v_targets, ties=ties, text_ids=used_ids, video_ids=preds.video_ids
        )
        source = "embeddings"
    refs_counts = [len(t) for t in refs.texts[kind]]
    fields = {"ties": ties, "refs": refs_field(refs_counts)}
    extra = {"source": source, "queries": {"t2v": len(t2v), "v2t": len(v2t)}}
    chance = (chance_levels or _ChanceLevels(False))(refs_counts)
    return {
        f"t2v_{kind}": _rank_group(t2v, t2v_owner, refs, fields, extra, chance["t2v"]),
        f"v2t_{kind}": _rank_group(v2t, v2t_owner, refs, fields, extra, chance["v2t"]),
    }


def _rank_group(
    stats: RankStats, owner: np.ndarray, refs: References, fields: dict, extra: dict, chance: dict[str, float]
) -> _Group:
    cat = refs.categories[owner]
    per_cat = {int(c): stats.subset(cat == c).summary() for c in np.unique(refs.categories)}
    scores = stats.summary()
    return _Group(
        scores,
        lambda w: stats.weighted_summary(w, groups=owner),
        per_cat,
        fields,
        extra,
        proportions={m: Proportion(len(stats)) for m in scores if m.startswith("R@")},
        chance=chance,
    )


def _reference_table(
    full: References, refs: References, kind: str, split: str, cache: _TokenCache
) -> TokenTable:
    """Tokens of ``refs``' texts of ``kind`` (a prefix of each video's in ``full``), tokenised once
    per dataset: see :mod:`create_bench.metrics.token_cache`."""
    on = cache.root is not False
    table, _ = reference_tokens(
        full.texts[kind],
        get_tokenizer(cache.tokenizer),
        fingerprint=cache.fingerprint,
        split=split,
        kind=kind,
        cache_dir=None if cache.root is True or not on else cache.root,  # type: ignore[arg-type]
        use_cache=on,
    )
    have = np.array([len(t) for t in full.texts[kind]], dtype=np.int64)
    want = np.array([len(t) for t in refs.texts[kind]], dtype=np.int64)
    if np.array_equal(have, want):
        return table
    starts = np.concatenate([[0], np.cumsum(have)[:-1]])
    return table.select(np.concatenate([s + np.arange(n) for s, n in zip(starts, want)]))


@dataclass
class _ChanceLevels:
    """Chance levels of reference counts (:mod:`create_bench.metrics.chance_cache`): each distinct
    count vector once per scoring run (CREATE's two text kinds have the same), and from the on-disk
    cache under ``root`` (``True``: the default cache root; ``False``: none), like the tokens."""

    root: bool | str | os.PathLike[str] = True
    memo: dict[bytes, Levels] = field(default_factory=dict)

    def __call__(self, counts: list[int]) -> Levels:
        key = np.asarray(counts, dtype=np.int64).tobytes()
        if key not in self.memo:
            on = self.root is not False
            cache_dir = None if self.root is True or not on else self.root
            self.memo[key] = cached_retrieval_chance(counts, cache_dir=cache_dir, use_cache=on)[0]  # type: ignore[arg-type]
        return {d: dict(levels) for d, levels in self.memo[key].items()}  # each group its own copy


@dataclass(frozen=True)
class _TokenCache:
    """Where the generation groups' reference tokens come from (see :func:`score_predictions`)."""

    tokenizer: str
    fingerprint: str
    root: bool | str | os.PathLike[str] = True


def _generation_group(
    preds: Predictions,
    refs: References,
    kind: str,
    split: str,
    meteor: bool,
    backend: str = "fast",
    full: References | None = None,
    cache: _TokenCache | None = None,
) -> _Group:
    gens = preds.generated(kind)
    _check_ids(f"{GENERATIONS} ({kind})", refs.vids, list(gens), split)
    if not refs.has_texts(kind):
        empty = next(v for v, t in zip(refs.vids, refs.texts[kind]) if not t)
        raise DataError(f"cannot score {kind} generation: a video has no reference {kind}s", vid=empty)
    references = dict(zip(refs.vids, refs.texts[kind]))
    tokenizer = cache.tokenizer if cache else "jieba"
    table = _reference_table(full or refs, refs, kind, split, cache) if cache else None
    stats = caption_statistics(
        {v: gens[v] for v in refs.vids},
        references,
        tokenizer=tokenizer,
        meteor=meteor,
        backend=backend,
        reference_tokens=table,
    )
    per_cat = {int(c): stats.subset(refs.categories == c).scores() for c in np.unique(refs.categories)}
    # not the backend: ``fast`` and ``coco`` give the same statistics (tests/test_metrics_caption_fast.py)
    metric = f"coco-{importlib.metadata.version('pycocoevalcap')}" + ("+meteor-1.5" if meteor else "")
    fields = {
        "tok": stats.tokenizer,
        "norm": NORMALIZER_NAME,
        "refs": refs_field(stats.refs),
        "metric": metric,
    }
    return _Group(stats.scores(), stats.weighted_scores, per_cat, fields)
