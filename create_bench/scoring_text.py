"""BERTScore-F and ACTEr-r in scoring (layer 4): the glue between a scored generation group and
:mod:`create_bench.features.text_metrics` (imported lazily: torch and an encoder only when
``--text-encoder`` is given).

Split out of :mod:`create_bench.scoring`, which re-exports :func:`text_metric_options`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from create_bench.predictions import Predictions
    from create_bench.scoring_groups import _Group
    from create_bench.scoring_references import References


def _with_text_metrics(
    group: _Group, preds: Predictions, refs: References, kind: str, text: _TextMetrics
) -> _Group:
    """``group`` plus BERTScore-F (and ACTEr-r for titles) from the same per-video statistics."""
    from dataclasses import replace

    from create_bench.features.text_metrics import embedding_statistics, load_omega

    texts = refs.texts[kind]
    cache = text.reference_cache(kind)
    omega = (
        load_omega(text.data_dir, text.split, refs.vids, [len(t) for t in texts]) if kind == "title" else None
    )
    gens = preds.generated(kind)
    stats = embedding_statistics(
        text.options,
        refs.vids,
        [gens[v] for v in refs.vids],
        texts,
        omega,
        acter=kind == "title",
        cache=cache,
    )
    stats = replace(stats, all_columns=False)
    old = group.weighted
    per_cat = {
        c: {**group.per_category[c], **stats.subset(refs.categories == c).scores()}
        for c in group.per_category
    }
    fields = {**group.fields, **{k.lower().replace("-r", ""): v for k, v in stats.signatures.items()}}
    return replace(
        group,
        scores={**group.scores, **stats.scores()},
        weighted=lambda w: {**old(w), **stats.weighted_scores(w)},
        per_category=per_cat,
        fields=fields,
    )


@dataclass(frozen=True)
class _TextMetrics:
    """BERTScore/ACTEr-r settings of a scoring run (None in :func:`_score_groups`: not computed)."""

    options: Any  # create_bench.features.text_metrics.TextMetricOptions
    data_dir: str | os.PathLike[str]
    split: str
    #: the data fingerprint and the cache root of the reference embeddings (None: not on disk)
    fingerprint: str = ""
    cache_root: Path | None = None

    def reference_cache(self, kind: str) -> Any:
        """The :class:`~create_bench.features.text_metrics.ReferenceCache` of ``kind``, or None."""
        if self.cache_root is None or not self.fingerprint:
            return None
        from create_bench.features.text_metrics import ReferenceCache

        return ReferenceCache(self.cache_root, self.fingerprint, self.split, kind)


def cache_dir(token_cache: bool | str | os.PathLike[str]) -> Path | None:
    """The cache root of ``ScoringOptions.token_cache`` (True: :func:`create_bench.fsutil.cache_root`;
    False: none): reference tokens and reference embeddings live under it."""
    from create_bench.fsutil import cache_root

    if token_cache is False:
        return None
    return cache_root() if token_cache is True else Path(token_cache)


def text_metrics(
    options: Any, data_dir: str | os.PathLike[str], split: str, fingerprint: str
) -> _TextMetrics | None:
    """The BERTScore/ACTEr-r settings of a scoring run with ``options`` (a ScoringOptions), or None."""
    text_opts = text_metric_options(options.text_encoder)
    if text_opts is None:
        return None
    return _TextMetrics(text_opts, data_dir, split, fingerprint, cache_dir(options.token_cache))


def text_metric_options(text_encoder: Any) -> Any:
    """``--text-encoder`` as :class:`~create_bench.features.text_metrics.TextMetricOptions` (a name or
    directory gets the defaults), or None."""
    if text_encoder is None or text_encoder == "":
        return None
    from create_bench.features.text_metrics import TextMetricOptions

    return (
        text_encoder if isinstance(text_encoder, TextMetricOptions) else TextMetricOptions(str(text_encoder))
    )


def prepare_text_metrics(options: Any, data_dir: str | os.PathLike[str], split: str) -> dict[str, int] | None:
    """Load the text encoder of ``options`` (a :class:`~create_bench.scoring.ScoringOptions`) and
    encode the split's title and caption references under its protocol once, in this process, so
    that every later :func:`~create_bench.scoring.score_predictions` on that split encodes only the
    system's generations. Returns kind -> number of references encoded; None without an encoder.

    The leaderboard worker calls it at start, outside any submission's scoring deadline.
    """
    from create_bench.data.shards import open_dataset

    text = text_metrics(options, data_dir, split, open_dataset(data_dir).fingerprint)
    if text is None:
        return None
    from create_bench.features.text_metrics import warm_references
    from create_bench.scoring_references import load_references
    from create_bench.types import TEXT_KINDS

    refs = load_references(data_dir, split).for_protocol(options.protocol)
    return {
        kind: warm_references(text.options, refs.texts[kind], text.reference_cache(kind))
        for kind in TEXT_KINDS
    }


def _text_metrics_note(text: _TextMetrics | None) -> dict[str, Any]:
    from create_bench.features.text_metrics import ABSENT

    return {"absent": ABSENT} if text is None else {"encoder": text.options.encoder}
