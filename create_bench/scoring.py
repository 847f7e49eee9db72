"""THE scoring code (layer 4): a predictions directory + a dataset split -> the results JSON.

``create-bench score``, ``create-bench eval`` and the leaderboard worker all call
:func:`score_predictions`; its signature is a stable interface.

Protocols (ARCHITECTURE.md). For each text kind (``caption``, ``title``):

- T2V: every text of the kind is a query over all videos of the split; its relevant item is its video.
- V2T: every video is a query over all texts of the kind; its rank is the best rank of its own texts.
- Generation: one generated text per video, against the video's references of that kind.

``multi-reference`` (default) uses every text of a video (CREATE test: 10 captions and 10 titles);
``single-reference`` only the first of each (``<vid>:<kind>:0``), for retrieval and generation alike.

Bootstrap intervals resample *videos* (a video's text queries go with it), with the same seeded
resamples for every score group: percentile intervals, except R@K, whose interval is Clopper-Pearson
at the effective sample size (see :mod:`create_bench.metrics.bootstrap`). Per-category scores are
aggregated from the same per-query and per-video statistics (ranks are always against the whole
split's gallery; CIDEr always uses the whole split's document frequencies).

Retrieval groups also carry their chance levels (:mod:`create_bench.metrics.chance`: the expected
value of each metric under random ranking, for the split's reference counts) and, with bootstrap
intervals, a check that controls the family-wise error over all the run's retrieval numbers
(Holm-adjusted p-values; results key ``chance_test``).

The options live in :mod:`create_bench.scoring_options`, the references in
:mod:`create_bench.scoring_references`, BERTScore/ACTEr-r glue in :mod:`create_bench.scoring_text`,
intervals and the chance check in :mod:`create_bench.scoring_uncertainty`; their public names are
re-exported here.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from create_bench import __version__
from create_bench.errors import ConfigError, DataError, PredictionError
from create_bench.metrics.bootstrap import Proportion
from create_bench.metrics.captioning import caption_statistics, refs_field
from create_bench.metrics.chance import retrieval_chance
from create_bench.metrics.retrieval import (
    RankStats,
    l2_normalise,
    rank_statistics,
    ranks_from_similarity,
)
from create_bench.metrics.token_cache import reference_tokens
from create_bench.metrics.tokens import TokenTable
from create_bench.predictions import (
    GENERATIONS,
    TEXT_EMBEDDINGS,
    TEXT_IDS,
    VIDEO_EMBEDDINGS,
    VIDEO_IDS,
    Predictions,
    load_predictions,
    similarity_file,
)
from create_bench.progress import Progress
from create_bench.results import build_results
from create_bench.scoring_options import PROTOCOLS, ScoringOptions
from create_bench.scoring_references import References, load_references
from create_bench.scoring_text import (
    _text_metrics_note,
    _TextMetrics,
    _with_text_metrics,
    text_metric_options,
)
from create_bench.scoring_uncertainty import (
    CHANCE_ALPHA,
    CI_LEVEL,
    INTERVALS,
    Uncertainty,
    _bootstrap_info,
    uncertainty,
)
from create_bench.signature import Signature
from create_bench.text import NORMALIZER_NAME, get_tokenizer
from create_bench.types import (
    TEXT_KINDS,
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
    what: str, expected: Sequence[str], got: Sequence[str], split: str, allowed: Sequence[str] | None = None
) -> None:
    """The predictions' ids against the split's (:func:`create_bench.types.id_differences`)."""
    missing, extra = id_differences(expected, got, allowed=allowed)
    if missing or extra:
        detail = describe_id_differences(missing, extra, extra_note=" not in the split")
        raise PredictionError(f"{what} does not match the {split!r} split; {detail}")


# ------------------------------------------------------------------------------------------------
# retrieval


def _retrieval_groups(
    preds: Predictions, refs: References, full: References, kind: str, split: str, ties: str
) -> dict[str, _Group]:
    """``t2v_<kind>`` and ``v2t_<kind>`` from embeddings or a similarity matrix."""
    assert preds.video_ids is not None
    if not refs.has_texts(kind):
        empty = next(v for v, t in zip(refs.vids, refs.texts[kind]) if not t)
        raise DataError(f"cannot score {kind} retrieval: a video has no {kind}s", vid=empty)
    vid_index = {v: i for i, v in enumerate(refs.vids)}
    _check_ids(VIDEO_IDS, refs.vids, preds.video_ids, split)
    col_of_vid = {v: j for j, v in enumerate(preds.video_ids)}
    rows, row_ids = preds.text_rows(kind)
    wanted = {text_id(v, kind, k) for v, t in zip(refs.vids, refs.texts[kind]) for k in range(len(t))}
    known = {text_id(v, kind, k) for v, t in zip(full.vids, full.texts[kind]) for k in range(len(t))}
    _check_ids(f"{TEXT_IDS} ({kind})", wanted, row_ids, split, allowed=known)
    used = np.array([i for i, tid in enumerate(row_ids) if tid in wanted], dtype=np.int64)
    used_ids = [row_ids[i] for i in used]
    text_vid = [parse_text_id(t)[0] for t in used_ids]
    t2v_targets = np.array([col_of_vid[v] for v in text_vid], dtype=np.int64)
    v2t_lists: list[list[int]] = [[] for _ in preds.video_ids]
    for i, v in enumerate(text_vid):
        v2t_lists[col_of_vid[v]].append(i)
    t2v_owner = np.array([vid_index[v] for v in text_vid], dtype=np.int64)
    v2t_owner = np.array([vid_index[v] for v in preds.video_ids], dtype=np.int64)

    if kind in preds.similarity:
        sim = preds.similarity[kind]
        if len(used) != sim.shape[0]:
            sim = np.asarray(sim[used])
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
        t2v = rank_statistics(texts, videos, t2v_targets, ties=ties, query_ids=used_ids)
        v2t = rank_statistics(videos, texts, v2t_lists, ties=ties, query_ids=preds.video_ids)
        source = "embeddings"
    refs_counts = [len(t) for t in refs.texts[kind]]
    fields = {"ties": ties, "refs": refs_field(refs_counts)}
    extra = {"source": source, "queries": {"t2v": len(t2v), "v2t": len(v2t)}}
    chance = retrieval_chance(refs_counts)
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


# ------------------------------------------------------------------------------------------------
# generation


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


# ------------------------------------------------------------------------------------------------
# the entry point


def _card_fields(card: dict[str, Any]) -> dict[str, Any]:
    """Signature fields the model card knows: frame policy and decoder (frame models), feature set."""
    inputs = card.get("inputs", "frames")
    if inputs == "features":
        return {"features": card.get("feature_set")}
    if inputs == "frames":
        return {"frames": card.get("frames"), "decode": card.get("decode")}
    return {}


def _model_info(preds: Predictions) -> dict[str, Any]:
    card = preds.model_card
    name = card.get("name") or card.get("model_name") or (preds.path.name if preds.path else "unknown")
    info: dict[str, Any] = {
        "name": str(name),
        "params": card.get("params"),
        "training_data": card.get("training_data"),
    }
    for key in ("version", "description", "license", "url"):
        if card.get(key) is not None:
            info[key] = card[key]
    return info


def _merge_refs(groups: dict[str, _Group]) -> str | None:
    by_kind: dict[str, str] = {}
    for name, g in groups.items():
        by_kind.setdefault(name.rsplit("_", 1)[-1], g.fields["refs"])
    values = set(by_kind.values())
    if not values:
        return None
    return values.pop() if len(values) == 1 else ",".join(f"{k}={v}" for k, v in sorted(by_kind.items()))


def _retrieval_gap(preds: Predictions, kind: str) -> str:
    """Why ``kind`` retrieval cannot be scored from these predictions."""
    if preds.video_ids is None:
        return f"no {VIDEO_EMBEDDINGS} with {VIDEO_IDS}"
    if preds.text_ids is None:
        return f"no {TEXT_EMBEDDINGS} with {TEXT_IDS}"
    if not len(preds.text_rows(kind)[0]):
        return f"{TEXT_IDS} has no {kind} ids ('<vid>:{kind}:<k>')"
    return f"no {similarity_file(kind)} and no {VIDEO_EMBEDDINGS}/{TEXT_EMBEDDINGS}"


def skipped_tasks(preds: Predictions) -> dict[str, str]:
    """Tasks the predictions do not allow, each with the reason (results key ``skipped_tasks``).

    Keys are task names (``retrieval``, ``title``, ``caption``); retrieval scored for one text kind
    only lists the other as ``retrieval:<kind>``.
    """
    out: dict[str, str] = {}
    have = preds.retrieval_kinds()
    gaps = {k: _retrieval_gap(preds, k) for k in TEXT_KINDS if k not in have}
    if gaps and not have:
        out["retrieval"] = "; ".join(dict.fromkeys(gaps.values()))
    else:
        out.update({f"retrieval:{k}": why for k, why in gaps.items()})
    gen = preds.generation_kinds()
    for kind in TEXT_KINDS:
        if kind not in gen:
            out[kind] = (
                f"no {GENERATIONS}" if preds.generations is None else f"{GENERATIONS} has no {kind!r} field"
            )
    return out


GROUP_ORDER = ("t2v_caption", "v2t_caption", "t2v_title", "v2t_title", "title", "caption")


def _score_groups(
    preds: Predictions,
    refs: References,
    full: References,
    split: str,
    options: ScoringOptions,
    fingerprint: str = "",
    text: _TextMetrics | None = None,
) -> dict[str, _Group]:
    """Every group the predictions allow, in :data:`GROUP_ORDER`."""
    cache = _TokenCache(options.tokenizer, fingerprint, options.token_cache if fingerprint else False)
    groups: dict[str, _Group] = {}
    for kind in preds.retrieval_kinds():
        groups.update(_retrieval_groups(preds, refs, full, kind, split, options.ties))
    for kind in preds.generation_kinds():
        groups[kind] = _generation_group(
            preds, refs, kind, split, options.meteor, options.metric_backend, full, cache
        )
        if text is not None:
            groups[kind] = _with_text_metrics(groups[kind], preds, refs, kind, text)
    if not groups:
        raise PredictionError("the predictions allow no task (no generations, and no usable embeddings)")
    return {g: groups[g] for g in GROUP_ORDER if g in groups}


def score_predictions(
    predictions: str | os.PathLike[str] | Predictions,
    data_dir: str | os.PathLike[str],
    split: str,
    options: ScoringOptions | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Score a predictions directory (or :class:`Predictions`) against a dataset split.

    Args:
        predictions: the predictions directory (see :mod:`create_bench.predictions`) or a loaded one.
        data_dir: a create-bench dataset directory.
        split: ``test``, ``validation``, ...
        options: the :class:`ScoringOptions` (default: the defaults).
        **overrides: fields of :class:`ScoringOptions` to change (``bootstrap=0``, ...), for callers
            that do not build the object; an unknown name is a :class:`ConfigError`.

    Returns:
        The results JSON content (:func:`create_bench.results.build_results`): every score group
        the predictions allow, ``ci``, ``per_category``, the signature string and fields.

    Raises:
        PredictionError: malformed predictions, or ids that do not match the split (listed).
        ConfigError: a bad option. DataError: the dataset cannot be read.
    """
    from create_bench.data.shards import open_dataset

    opts = ScoringOptions.of(options, **overrides)
    text_opts = text_metric_options(opts.text_encoder)
    text = None if text_opts is None else _TextMetrics(text_opts, data_dir, split)
    with Progress("score:", 3 if opts.bootstrap else 2, unit="steps", eta=False) as steps:
        preds = predictions if isinstance(predictions, Predictions) else load_predictions(predictions)
        info = open_dataset(data_dir)
        full = load_references(data_dir, split)
        refs = full.for_protocol(opts.protocol)
        steps.update(note=f"read predictions and {len(refs.vids)} {split} references")
        groups = _score_groups(preds, refs, full, split, opts, fingerprint=info.fingerprint, text=text)
        steps.update(note=f"scored {', '.join(groups)}")
        unc = uncertainty(groups, len(refs.vids), bootstrap=opts.bootstrap, seed=opts.seed)
        if opts.bootstrap:
            steps.update(note=f"{opts.bootstrap} bootstrap resamples")
    signature, signatures = _signatures(groups, preds, info.fingerprint, split, opts)
    return build_results(
        model=_model_info(preds),
        dataset=_dataset_info(info, refs, split),
        scores={g: v.scores for g, v in groups.items()},
        signature=signature,
        signatures=signatures,
        ci=unc.ci,
        bootstrap=_bootstrap_info(opts.bootstrap, opts.seed) if opts.bootstrap else None,
        chance=unc.chance or None,
        chance_test=unc.chance_test,
        per_category=_per_category(groups, refs, full),
        protocol=opts.protocol,
        extra={
            "retrieval": {g: v.extra for g, v in groups.items() if v.extra},
            "skipped_tasks": skipped_tasks(preds),
            "text_metrics": _text_metrics_note(text),
        },
    )


def _signatures(
    groups: dict[str, _Group], preds: Predictions, fingerprint: str, split: str, opts: ScoringOptions
) -> tuple[Signature, dict[str, Signature]]:
    """The run's signature (fields of every group, ``refs`` merged) and one per group."""
    base = {"data": fingerprint, "split": split, "protocol": opts.protocol, **_card_fields(preds.model_card)}
    boot = {"bootstrap": opts.bootstrap, "seed": opts.seed} if opts.bootstrap else {}
    signatures = {g: Signature(__version__, **base, **v.fields, **boot) for g, v in groups.items()}
    all_fields: dict[str, Any] = {}
    for v in groups.values():
        all_fields.update(v.fields)
    all_fields["refs"] = _merge_refs(groups)
    return Signature(__version__, **base, **all_fields, **boot), signatures


def _per_category(groups: dict[str, _Group], refs: References, full: References) -> dict[str, Any]:
    per_category: dict[str, Any] = {}
    for c in sorted(full.category_names):
        entry: dict[str, Any] = {"name": full.category_names[c], "count": int((refs.categories == c).sum())}
        entry.update({g: v.per_category[c] for g, v in groups.items()})
        per_category[str(c)] = entry
    return per_category


def _dataset_info(info: Any, refs: References, split: str) -> dict[str, Any]:
    """The results' ``dataset`` block: name, fingerprint, split, counts (and rows left out)."""
    counts: dict[str, int] = {"videos": len(refs.vids)}
    for kind in TEXT_KINDS:
        counts[f"{kind}_texts"] = sum(len(t) for t in refs.texts[kind])
    dataset: dict[str, Any] = {
        "name": info.name,
        "fingerprint": info.fingerprint,
        "split": split,
        "counts": counts,
    }
    n_skipped = int((info.manifest.get("skipped") or {}).get(split, 0))
    if n_skipped:  # rows ``build --on-error skip`` left out: the scores are over the others
        dataset["skipped"] = n_skipped
    return dataset


def compare_predictions(
    predictions_a: str | os.PathLike[str] | Predictions,
    predictions_b: str | os.PathLike[str] | Predictions,
    data_dir: str | os.PathLike[str],
    split: str,
    options: ScoringOptions | None = None,
    **overrides: Any,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Paired bootstrap test of system A against system B on the groups both can be scored on.

    Both systems are scored on the same split and the same seeded video resamples; see
    :func:`create_bench.metrics.bootstrap.paired_bootstrap_test` for the p-value. ``options`` and
    ``overrides`` as in :func:`score_predictions` (METEOR is never computed here).

    Returns:
        group -> metric -> ``{"a", "b", "delta", "ci", "p_value"}`` (``delta`` = a - b).
    """
    from create_bench.metrics.bootstrap import paired_bootstrap_test

    opts = replace(ScoringOptions.of(options, **overrides), meteor=False)
    if opts.bootstrap < 1:
        raise ConfigError("a paired bootstrap test needs bootstrap >= 1 resamples")
    from create_bench.data.shards import open_dataset

    fp = open_dataset(data_dir).fingerprint
    full = load_references(data_dir, split)
    refs = full.for_protocol(opts.protocol)
    scored = []
    for p in (predictions_a, predictions_b):
        preds = p if isinstance(p, Predictions) else load_predictions(p)
        scored.append(_score_groups(preds, refs, full, split, opts, fingerprint=fp))
    a, b = scored
    common = [g for g in a if g in b]
    if not common:
        raise PredictionError(f"the two systems share no score group (A: {list(a)}, B: {list(b)})")
    n = len(refs.vids)
    return {
        g: paired_bootstrap_test(a[g].weighted, b[g].weighted, n, n_boot=opts.bootstrap, seed=opts.seed)
        for g in common
    }


__all__ = [
    "CHANCE_ALPHA",
    "CI_LEVEL",
    "GROUP_ORDER",
    "INTERVALS",
    "PROTOCOLS",
    "References",
    "ScoringOptions",
    "Uncertainty",
    "compare_predictions",
    "load_references",
    "score_predictions",
    "skipped_tasks",
    "text_metric_options",
    "uncertainty",
]
