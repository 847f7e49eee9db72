"""The options of scoring (layer 4): :class:`ScoringOptions`, one frozen object checked once on
creation, and the protocols it accepts.

Split out of :mod:`create_bench.scoring`, which re-exports both names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from create_bench.errors import ConfigError
from create_bench.metrics.captioning import BACKENDS
from create_bench.metrics.retrieval import TIE_POLICIES
from create_bench.registry import check_option_names
from create_bench.text import get_tokenizer

PROTOCOLS = ("multi-reference", "single-reference")


@dataclass(frozen=True)
class ScoringOptions:
    """Every option of :func:`score_predictions` (one frozen object, checked once on creation).

    The commands build it with :func:`create_bench.commands._scoring.scoring_options`; new
    options (a text encoder, ...) are new fields here, with a check in :meth:`__post_init__`.

    Attributes:
        tokenizer: ``jieba`` (default) or ``char``, for the generation metrics.
        protocol: ``multi-reference`` (every text of a video) or ``single-reference`` (the first).
        bootstrap: number of bootstrap resamples for the 95% intervals (0: none).
        seed: the bootstrap seed (in the signature).
        ties: retrieval tie policy, ``expected`` (default), ``optimistic`` or ``pessimistic``.
        meteor: also compute METEOR (needs Java).
        metric_backend: captioning scorers, ``fast`` (default) or ``coco`` (pycocoevalcap's; the
            same scores, so not in the signature).
        token_cache: reference tokens cached per dataset (:mod:`create_bench.metrics.token_cache`),
            and retrieval chance levels per reference counts beside them
            (:mod:`create_bench.metrics.chance_cache`): True (default: under ``$CREATE_BENCH_CACHE``
            or ``~/.cache/create-bench``), a cache directory, or False (compute every time).
        text_encoder: BERTScore-F and ACTEr-r for generations: an encoder name or directory, or a
            :class:`~create_bench.features.text_metrics.TextMetricOptions`; None: not computed
            (the results' ``text_metrics.absent`` says so in one line).
    """

    tokenizer: str = "jieba"
    protocol: str = "multi-reference"
    bootstrap: int = 1000
    seed: int = 0
    ties: str = "expected"
    meteor: bool = False
    metric_backend: str = "fast"
    token_cache: bool | str | os.PathLike[str] = True
    text_encoder: Any = None

    def __post_init__(self) -> None:
        if self.metric_backend not in BACKENDS:
            raise ConfigError(
                f"metric backend must be one of {', '.join(BACKENDS)}, got {self.metric_backend!r}"
            )
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.ties not in TIE_POLICIES:
            raise ConfigError(f"ties must be one of {', '.join(TIE_POLICIES)}, got {self.ties!r}")
        b = self.bootstrap
        if not isinstance(b, int) or isinstance(b, bool) or b < 0:
            raise ConfigError(f"bootstrap must be a non-negative integer (0 = no intervals), got {b!r}")
        if not isinstance(self.seed, int | np.integer) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        get_tokenizer(self.tokenizer)

    @classmethod
    def of(cls, options: ScoringOptions | None = None, **overrides: Any) -> ScoringOptions:
        """``options`` (default: the defaults) with ``overrides`` applied; an unknown keyword is a
        :class:`ConfigError` with "did you mean"."""
        check_option_names("scoring", overrides, [f.name for f in fields(cls)])
        base = options if options is not None else cls()
        return replace(base, **overrides) if overrides else base
