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

import os
from dataclasses import replace
from typing import Any

from create_bench import __version__
from create_bench.errors import ConfigError, PredictionError
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
from create_bench.scoring_groups import (
    _ChanceLevels,
    _generation_group,
    _Group,
    _retrieval_groups,
    _TokenCache,
)
from create_bench.scoring_options import PROTOCOLS, ScoringOptions
from create_bench.scoring_references import References, load_references
from create_bench.scoring_text import (
    _text_metrics_note,
    _TextMetrics,
    _with_text_metrics,
    prepare_text_metrics,
    text_metric_options,
    text_metrics,
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
from create_bench.types import (
    TEXT_KINDS,
)

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
    chance = _ChanceLevels(cache.root)  # reference-side, like the tokens: cached with them
    for kind in preds.retrieval_kinds():
        groups.update(_retrieval_groups(preds, refs, full, kind, split, options.ties, chance))
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
    with Progress("score:", 3 if opts.bootstrap else 2, unit="steps", eta=False) as steps:
        preds = predictions if isinstance(predictions, Predictions) else load_predictions(predictions)
        info = open_dataset(data_dir)
        text = text_metrics(opts, data_dir, split, info.fingerprint)
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
    "prepare_text_metrics",
    "score_predictions",
    "skipped_tasks",
    "text_metric_options",
    "uncertainty",
]
